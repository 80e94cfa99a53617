"""Which schedule to try next: the exploration strategies of the controlled scheduler, and
the replay token that writes one schedule down.

A schedule is the list of choices made at the scheduler's decision points: at each point the
scheduler knows which tasks (threads, or processes) could run, and one of them is chosen.
Choosing the task that is already running costs nothing; choosing another while it could go
on is a *preemption*. Strategies:

- ``random``: a seeded random walk; the first schedule switches at every point (round robin),
  which shows most read-then-write races at once;
- ``pct``: probabilistic concurrency testing (Burckhardt et al., 2010): random priorities,
  and ``depth - 1`` points at which the running task drops to the lowest priority;
- ``dfs``: every schedule with at most ``bound`` preemptions, depth first, starting with the
  schedule with none (iterative context bounding, as in CHESS), and second one schedule
  that switches at every step (round robin: most lost updates show there at once). When the
  search runs out, the pass is a proof within the bound, not a lucky run.

A strategy makes a :class:`Plan` for each run; the scheduler asks the plan at every point.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import zlib
from collections.abc import Sequence
from typing import Final, final

__all__ = [
    "STRATEGIES",
    "Decision",
    "Dfs",
    "Pct",
    "Plan",
    "RandomWalk",
    "Replay",
    "Strategy",
    "TokenError",
    "decode",
    "encode",
    "make",
]

STRATEGIES: Final = ("random", "pct", "dfs")
DEFAULT_BOUND: Final = 2
PCT_DEPTH: Final = 3
_TOKEN_VERSION: Final = "k1"  # noqa: S105 - a format tag, not a secret


@final
@dataclasses.dataclass(frozen=True)
class Decision:
    """One choice: who could run, who was running (None if it could not go on), who ran."""

    enabled: tuple[int, ...]
    current: int | None
    chosen: int
    what: str  # the operation the chosen task was about to do, for the divergence check

    @property
    def default(self) -> int:
        return _default(self.current, self.enabled)

    @property
    def preempts(self) -> bool:
        return self.current is not None and self.chosen != self.current


def _default(current: int | None, enabled: Sequence[int]) -> int:
    return current if current is not None and current in enabled else enabled[0]


class Plan:
    """The choices of one run. ``choose`` is called only when two or more tasks can run."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.diverged: str | None = None

    def pick(self, current: int | None, enabled: tuple[int, ...], what: list[str]) -> int:
        chosen = self.choose(len(self.decisions), current, enabled)
        if chosen not in enabled:
            chosen = _default(current, enabled)
        # Only the operation's name: the objects' names hold addresses that change per run.
        op = what[enabled.index(chosen)].split(" ", 1)[0]
        self.decisions.append(Decision(enabled, current, chosen, op))
        return chosen

    def choose(self, step: int, current: int | None, enabled: tuple[int, ...]) -> int:
        return _default(current, enabled)

    def new_task(self, index: int) -> None:
        """A task was created (a thread started, a process joined the run)."""

    @property
    def preemptions(self) -> int:
        return sum(d.preempts for d in self.decisions)

    def token(self) -> str:
        return encode(self.decisions)


class Strategy:
    """Makes the plan of each run, and says when there is nothing left to try."""

    name = "default"
    exhaustive = False

    def plan(self, run: int) -> Plan | None:
        """The plan for run number ``run`` (0 first), or None when exploration is over."""
        raise NotImplementedError

    def finished(self, plan: Plan) -> None:
        """The run of ``plan`` is over: learn from what happened."""

    def summary(self, runs: int) -> str:
        return f"{runs} schedule(s) explored ({self.name})"


# -- random walk -------------------------------------------------------------------------------


@final
class _RandomPlan(Plan):
    def __init__(self, rng: random.Random | None) -> None:
        super().__init__()
        self.rng = rng

    def choose(self, step: int, current: int | None, enabled: tuple[int, ...]) -> int:
        if self.rng is None:  # round robin: the next task after the running one, every time
            after = [t for t in enabled if current is not None and t > current]
            return after[0] if after else enabled[0]
        return self.rng.choice(enabled)


@final
class RandomWalk(Strategy):
    name = "random"

    def __init__(self, seed: int, runs: int) -> None:
        self.seed, self.runs = seed, runs

    def plan(self, run: int) -> Plan | None:
        if run >= self.runs:
            return None
        return _RandomPlan(None if run == 0 else random.Random(f"{self.seed}:{run}"))

    def summary(self, runs: int) -> str:
        return f"{runs} random schedule(s) explored (seeded walk, the first round robin)"


# -- PCT ---------------------------------------------------------------------------------------


@final
class _PctPlan(Plan):
    def __init__(self, rng: random.Random, depth: int, length: int) -> None:
        super().__init__()
        self.rng = rng
        self.priority: dict[int, float] = {}
        self.changes = sorted(rng.sample(range(1, max(length, depth) + 1), depth - 1))
        self.low = 0.0

    def new_task(self, index: int) -> None:
        self.priority[index] = 1.0 + self.rng.random()

    def choose(self, step: int, current: int | None, enabled: tuple[int, ...]) -> int:
        if self.changes and step >= self.changes[0] and current is not None:
            self.changes.pop(0)
            self.low -= 1.0
            self.priority[current] = self.low  # below every task's first priority
        for task in enabled:
            if task not in self.priority:
                self.new_task(task)
        return max(enabled, key=lambda t: (self.priority[t], -t))


@final
class Pct(Strategy):
    name = "pct"

    def __init__(self, seed: int, runs: int, depth: int = PCT_DEPTH) -> None:
        self.seed, self.runs, self.depth = seed, runs, depth
        self.length = 20  # decision points in a run: learnt from the first run

    def plan(self, run: int) -> Plan | None:
        if run >= self.runs:
            return None
        return _PctPlan(random.Random(f"{self.seed}:pct:{run}"), self.depth, self.length)

    def finished(self, plan: Plan) -> None:
        self.length = max(self.length, len(plan.decisions))

    def summary(self, runs: int) -> str:
        return f"{runs} PCT schedule(s) explored (depth {self.depth})"


# -- bounded exhaustive search -------------------------------------------------------------------


@final
@dataclasses.dataclass
class _Frame:
    enabled: tuple[int, ...]
    current: int | None
    chosen: int
    spent: int  # preemptions before this decision
    tried: set[int]


@final
class _ForcedPlan(Plan):
    """Follows a prefix of choices, then never preempts."""

    def __init__(self, prefix: list[int]) -> None:
        super().__init__()
        self.prefix = prefix

    def choose(self, step: int, current: int | None, enabled: tuple[int, ...]) -> int:
        if step < len(self.prefix):
            return self.prefix[step]
        return _default(current, enabled)


@final
class Dfs(Strategy):
    """Every schedule with at most ``bound`` preemptions, depth first; at most ``limit``."""

    name = "dfs"

    def __init__(self, bound: int = DEFAULT_BOUND, limit: int = 5000) -> None:
        self.bound, self.limit = bound, limit
        self.stack: list[_Frame] = []
        self.done = False
        self.first = True

    @property
    def exhaustive(self) -> bool:  # type: ignore[override]
        return self.done

    def plan(self, run: int) -> Plan | None:
        if self.done or run >= self.limit:
            return None
        if run == 1:  # second, one schedule outside the bound: a switch at every point,
            return _RandomPlan(None)  # which shows most read-then-write races at once
        if not self.first and not self._advance():
            self.done = True
            return None
        self.first = False
        return _ForcedPlan([frame.chosen for frame in self.stack])

    def finished(self, plan: Plan) -> None:
        if isinstance(plan, _RandomPlan):
            return
        # The decisions beyond the forced prefix are new frames of the search tree.
        spent = self.stack[-1].spent + self._cost(self.stack[-1]) if self.stack else 0
        for decision in plan.decisions[len(self.stack) :]:
            frame = _Frame(decision.enabled, decision.current, decision.chosen, spent, set())
            frame.tried.add(decision.chosen)
            self.stack.append(frame)
            spent += self._cost(frame)
        if len(plan.decisions) < len(self.stack):  # the code did less this time: cut back
            del self.stack[len(plan.decisions) :]

    @staticmethod
    def _cost(frame: _Frame) -> int:
        return int(frame.current is not None and frame.chosen != frame.current)

    def _advance(self) -> bool:
        while self.stack:
            frame = self.stack[-1]
            for task in frame.enabled:
                if task in frame.tried:
                    continue
                cost = int(frame.current is not None and task != frame.current)
                if frame.spent + cost <= self.bound:
                    frame.tried.add(task)
                    frame.chosen = task
                    return True
            self.stack.pop()
        return False

    def summary(self, runs: int) -> str:
        if self.done:
            return (
                f"all {runs - 1} schedule(s) with at most {self.bound} preemption(s) passed, "
                "and one that switches at every step"
            )
        return (
            f"{runs} schedule(s) with at most {self.bound} preemption(s) passed; the search "
            f"stopped at its limit before trying them all"
        )


# -- replay --------------------------------------------------------------------------------------


class TokenError(ValueError):
    """A ``--kata-schedule`` token that is not one this plugin wrote."""


@final
@dataclasses.dataclass(frozen=True)
class Token:
    choices: tuple[int, ...]  # the task chosen at each decision point, in order
    signature: int  # a checksum of what was done at each point, to notice changed code


def _signature(decisions: Sequence[Decision]) -> int:
    text = "|".join(f"{d.chosen}:{d.what}" for d in decisions)
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


def _varints(numbers: Sequence[int]) -> bytes:
    out = bytearray()
    for number in numbers:
        while True:
            byte = number & 0x7F
            number >>= 7
            out.append(byte | (0x80 if number else 0))
            if not number:
                break
    return bytes(out)


def _unvarints(data: bytes) -> list[int]:
    numbers, number, shift = [], 0, 0
    for byte in data:
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            numbers.append(number)
            number, shift = 0, 0
    if shift:
        raise TokenError("it ends in the middle of a number")
    return numbers


def encode(decisions: Sequence[Decision]) -> str:
    """A short text for a schedule: the points where the choice was not the default one (as
    gaps between them), the task chosen there, and a checksum of the whole run."""
    numbers: list[int] = [_signature(decisions), len(decisions)]
    last = -1
    for step, decision in enumerate(decisions):
        if decision.chosen != decision.default:
            numbers += [step - last - 1, decision.chosen]
            last = step
    packed = zlib.compress(_varints(numbers), 9)
    raw = _varints(numbers)
    body = base64.b32encode(raw if len(raw) <= len(packed) else b"z" + packed)
    return f"{_TOKEN_VERSION}-{body.decode().rstrip('=').lower()}"


def decode(text: str) -> tuple[int, int, dict[int, int]]:
    """(signature, decision count, {step: task}) from a token, or TokenError."""
    prefix, _, body = text.strip().partition("-")
    if prefix != _TOKEN_VERSION or not body:
        raise TokenError(f"it does not start with {_TOKEN_VERSION}-")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        if raw[:1] == b"z":
            raw = zlib.decompress(raw[1:])
        numbers = _unvarints(raw)
    except (ValueError, zlib.error) as exc:
        raise TokenError(f"it is damaged ({exc})") from None
    if len(numbers) < 2 or len(numbers) % 2:
        raise TokenError("it is damaged (wrong length)")
    signature, count, rest = numbers[0], numbers[1], numbers[2:]
    choices: dict[int, int] = {}
    step = -1
    for gap, task in zip(rest[::2], rest[1::2], strict=True):
        step += gap + 1
        choices[step] = task
    return signature, count, choices


@final
class _ReplayPlan(Plan):
    def __init__(self, choices: dict[int, int]) -> None:
        super().__init__()
        self.choices = choices

    def choose(self, step: int, current: int | None, enabled: tuple[int, ...]) -> int:
        wanted = self.choices.get(step)
        if wanted is None:
            return _default(current, enabled)
        if wanted not in enabled and self.diverged is None:
            self.diverged = (
                f"at decision {step + 1} the schedule says task {wanted} runs, but it could not"
            )
        return wanted


@final
class Replay(Strategy):
    """Takes the decisions a token wrote down, once."""

    name = "replay"

    def __init__(self, token: str) -> None:
        self.signature, self.count, self.choices = decode(token)
        self.diverged: str | None = None

    def plan(self, run: int) -> Plan | None:
        return _ReplayPlan(self.choices) if run == 0 else None

    def finished(self, plan: Plan) -> None:
        if plan.diverged is not None:
            self.diverged = plan.diverged
        elif len(plan.decisions) != self.count or _signature(plan.decisions) != self.signature:
            self.diverged = (
                f"the run made {len(plan.decisions)} decision(s) where the recorded one made "
                f"{self.count}, or did something else at one of them"
            )

    def summary(self, runs: int) -> str:
        if self.diverged:
            return (
                f"the schedule from --kata-schedule did not fit this code ({self.diverged}): "
                "the code changed since the token was printed, so this is not the same run"
            )
        return "the schedule from --kata-schedule was replayed exactly"


def make(name: str, seed: int, runs: int, bound: int = DEFAULT_BOUND) -> Strategy:
    if name == "random":
        return RandomWalk(seed, runs)
    if name == "pct":
        return Pct(seed, runs)
    if name == "dfs":
        return Dfs(bound, limit=runs)
    raise ValueError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}")
