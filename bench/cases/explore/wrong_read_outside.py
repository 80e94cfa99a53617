"""WRONG: the old value is read before the lock is taken; only the write is guarded."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._value = 0
        self._mutex = threading.Lock()

    def increment(self, by: int = 1) -> None:
        before = self._value
        with self._mutex:
            self._value = before + by

    @property
    def value(self) -> int:
        with self._mutex:
            return self._value
