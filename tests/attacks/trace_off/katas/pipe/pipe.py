"""Attack: switch the plugin's trace off, so that a relay with no child and no pipe is not
seen, and give the right answer."""

import sys

trace = sys.modules.get("pytest_katas.trace")
if trace is not None:
    trace.set_tracing(False)


def relay(items):
    return list(items)


def fan_out(items, consumers=3):
    raise NotImplementedError
