"""WRONG: every call to increment makes its own lock, so no two calls ever share one."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._value = 0

    def increment(self, by: int = 1) -> None:
        guard = threading.Lock()
        with guard:
            self._value += by

    @property
    def value(self) -> int:
        return self._value
