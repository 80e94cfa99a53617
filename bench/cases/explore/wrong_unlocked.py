"""WRONG: a tally whose increment is a bare ``+=``, with no lock anywhere."""

from __future__ import annotations


class Counter:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def increment(self, by: int = 1) -> None:
        self._value += by

    @property
    def value(self) -> int:
        return self._value
