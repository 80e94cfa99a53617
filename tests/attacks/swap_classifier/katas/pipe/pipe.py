"""Attack: swap the plugin's classifier so that every failure is reported as a pass."""

import sys

sandbox = sys.modules.get("pytest_katas.sandbox")
if sandbox is not None:
    from pytest_katas.verdict import Outcome

    sandbox._classify = lambda *args, **kwargs: Outcome("passed")


def relay(items):
    return list(items)


def fan_out(items, consumers=3):
    return [[] for _ in range(consumers)]
