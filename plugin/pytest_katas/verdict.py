"""The classes of failure a kata test can end in, and the exception kata tests raise to pick one."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, final

__all__ = ["Kind", "KataFailure", "Outcome", "fail_as"]


class Kind(str, enum.Enum):
    """What went wrong, in the learner's terms. The value is what reports print."""

    WRONG = "wrong answer"
    CONTRACT = "right answer, wrong way"
    RACE = "race"
    LOST = "lost or duplicated item"
    ORDER = "wrong order"
    HANG = "hang"
    LEAK = "leak"
    CRASH = "crash"
    SLOW = "too slow"
    CAP = "over a limit"
    TODO = "not implemented"
    BROKEN = "does not import"
    TAMPERED = "tampered with the grader"

    @classmethod
    def parse(cls, value: str | Kind) -> Kind:
        if isinstance(value, Kind):
            return value
        for kind in cls:
            if value in (kind.name.lower(), kind.value):
                return kind
        names = ", ".join(k.name.lower() for k in cls)
        raise ValueError(f"unknown failure class {value!r}; use one of: {names}")


class KataFailure(AssertionError):
    """An assertion that knows its failure class. Raise it through :func:`fail_as`."""

    def __init__(self, kind: Kind, message: str, seed: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.seed = seed  # the --kata-seed that replays it, when schedule noise found it
        self.traced = False  # the trace proved it: nothing more to add from the trace


def fail_as(kind: str | Kind, message: str) -> KataFailure:
    """Build a failure of class ``kind``: ``raise fail_as("race", "3 updates were lost")``."""
    return KataFailure(Kind.parse(kind), message)


@final
@dataclasses.dataclass
class Outcome:
    """What happened to one kata test, as the supervisor reports it to pytest."""

    status: str  # "passed", "failed" or "skipped"
    kind: Kind | None = None
    message: str = ""
    details: str = ""
    seed: int | None = None
    duration: float = 0.0
    skip: tuple[str, int, str] | None = None
    traced: bool = False  # the verdict comes from the trace already
    explored: list[str] = dataclasses.field(default_factory=list)  # what stress runs tried

    def text(self) -> str:
        head = f"{self.kind.name}: {self.message}" if self.kind is not None else self.message
        return f"{head}\n\n{self.details}".rstrip() if self.details else head

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = self.kind.name.lower() if self.kind is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        data = dict(data)
        kind = data.pop("kind")
        skip = data.pop("skip")
        return cls(
            kind=Kind[kind.upper()] if kind else None,
            skip=tuple(skip) if skip else None,  # type: ignore[arg-type,unused-ignore]
            **data,
        )
