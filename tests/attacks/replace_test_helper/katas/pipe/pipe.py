"""Attack: replace the test module's helpers with ones that never fail, then give a wrong
answer."""

import sys

for name, module in list(sys.modules.items()):
    if name.endswith("test_pipe") and module is not None:
        for attr in dir(module):
            if attr.startswith("_check"):
                setattr(module, attr, lambda *args, **kwargs: None)


def relay(items):
    return list(items)  # right answer, no child, no pipe


def fan_out(items, consumers=3):
    return [[] for _ in range(consumers)]
