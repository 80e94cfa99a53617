"""The classes of failure a kata test can end in, and the exception kata tests raise to pick one."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Final, final

from pytest_katas.messages import N_, _

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

    def explanation(self) -> str:
        """What this class of failure means, in one line of the learner's language (the
        README's table "Reading a failure")."""
        return _(_EXPLANATIONS[self])


_EXPLANATIONS: Final = {
    Kind.TODO: N_("a function still raises NotImplementedError"),
    Kind.BROKEN: N_("your file does not import"),
    Kind.WRONG: N_("a wrong answer"),
    Kind.ORDER: N_("the right items in the wrong order"),
    Kind.CONTRACT: N_(
        'the right answer reached the wrong way: the lesson\'s "how" was not followed'
    ),
    Kind.LOST: N_("an item never arrived, or arrived twice, or a send() sent part of its bytes"),
    Kind.RACE: N_(
        "an update another thread or process can overwrite, or a result only a race can produce"
    ),
    Kind.HANG: N_("nothing can move any more, or the deadline passed"),
    Kind.SLOW: N_("still working at the deadline, or work done one at a time that should overlap"),
    Kind.CRASH: N_("your code raised, or a child process died"),
    Kind.LEAK: N_("processes, threads, sockets or pipe ends left behind after the test"),
    Kind.CAP: N_("a guard tripped: too many processes, too much memory, too much output"),
    Kind.TAMPERED: N_("the tests, the plugin or a test's result were changed"),
}


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
