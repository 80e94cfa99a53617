"""CORRECT: a re-entrant lock shared by a condition; each increment notifies waiters."""

from __future__ import annotations

import threading


class Counter:
    def __init__(self) -> None:
        self._value = 0
        self._rlock = threading.RLock()
        self._changed = threading.Condition(self._rlock)

    def increment(self, by: int = 1) -> None:
        with self._changed:
            self._value += by
            self._changed.notify_all()

    @property
    def value(self) -> int:
        with self._rlock:
            return self._value
