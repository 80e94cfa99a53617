"""The run directory: the one channel between a kata test's processes and its supervisor.

Every process of a test writes typed records into one temporary folder, and the sandbox and
the supervisor read them back. Only this module knows the folder's file names and formats:

- one JSON file per process and kind of record (who it is, how it ended, what it raised),
  written atomically, so a reader never sees half a record;
- the fixed-width run state (is schedule noise on, is the trace on), rewritten in place;
- each process's stack dumps (``faulthandler`` writes them on request);
- each process's event trace, appended in batches of JSON lines;
- each process's status table, a small shared-memory file saying what every thread is
  blocked in right now, which the supervisor reads to spot a deadlock as it happens.

Learner processes write here and are not trusted: every reader drops what it cannot parse.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Generic, TypeVar, final

__all__ = [
    "ENDED",
    "ENV_MODULES",
    "ENV_RUNDIR",
    "EXITED",
    "LEARNER_ROLES",
    "POOL_FAILED",
    "RAISED",
    "REGISTERED",
    "STARTED",
    "Ended",
    "Exited",
    "PoolFailure",
    "ProcessInfo",
    "Raised",
    "ResultRecord",
    "RunDir",
    "RunState",
    "Slot",
    "StatusTable",
    "learner_files",
    "learner_modules",
]

ENV_RUNDIR: Final = "PYTEST_KATA_RUNDIR"
ENV_MODULES: Final = "PYTEST_KATA_MODULES"

# The roles of the processes that run learner code; a Manager's server is infrastructure.
LEARNER_ROLES: Final = ("worker", "pool")

R = TypeVar("R")


def learner_modules() -> dict[str, str]:
    """The kata modules of this test, ``{"kata_pipe": "/path/to/pipe.py"}``."""
    try:
        found = json.loads(os.environ.get(ENV_MODULES, "{}"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def learner_files() -> tuple[str, ...]:
    """The learner's source files, in a fixed order (a site names its file by index)."""
    return tuple(learner_modules().values())


# -- records ---------------------------------------------------------------------------


@final
@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """A process of the test: announced by itself when it boots, and noted by its parent
    when it is started (so a child killed before it boots is still known)."""

    pid: int
    name: str
    role: str  # "test", "worker" (a learner's Process), "pool" (a Pool's worker), "manager"
    started: float
    target: str | None = None
    where: str | None = None  # file:line of the target's definition
    main_thread: int | None = None
    parent: int | None = None


@final
@dataclasses.dataclass(frozen=True)
class Exited:
    """A child's exit code, as its parent learned it (minus the signal if killed)."""

    pid: int
    exitcode: int


@final
@dataclasses.dataclass(frozen=True)
class Raised:
    """An exception that ended a process (or a thread of it)."""

    pid: int
    traceback: str
    exc_type: str = ""
    message: str = ""
    frames: tuple[tuple[str, int, str], ...] = ()  # (file, line, function), outermost first


@final
@dataclasses.dataclass(frozen=True)
class Ended:
    """A child its parent ended on purpose (terminate(), kill()): not a crash."""

    pid: int
    signal: int


@final
@dataclasses.dataclass(frozen=True)
class PoolFailure:
    """A task that raised in a Pool worker, as the parent received it."""

    pid: int
    traceback: str


@final
@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """What the test process writes once its test is over: the outcome (as
    ``verdict.Outcome.to_json()`` gives it) and the proof the supervisor handed it. Read
    back as it was found: the supervisor checks both, field by field."""

    outcome: Any
    nonce: Any


@final
@dataclasses.dataclass(frozen=True)
class _Kind(Generic[R]):
    prefix: str
    type: type[R]


REGISTERED: Final = _Kind("proc", ProcessInfo)
STARTED: Final = _Kind("started", ProcessInfo)
EXITED: Final = _Kind("exit", Exited)
RAISED: Final = _Kind("exc", Raised)
ENDED: Final = _Kind("ended", Ended)
POOL_FAILED: Final = _Kind("poolexc", PoolFailure)


def _decode(kind: _Kind[R], data: Any) -> R | None:
    """A record from untrusted JSON, or None if it does not fit the record's fields."""
    if not isinstance(data, dict):
        return None
    fields = {f.name for f in dataclasses.fields(kind.type)}  # type: ignore[arg-type]
    try:
        record = kind.type(**{k: v for k, v in data.items() if k in fields})
    except TypeError:
        return None
    if not isinstance(getattr(record, "pid", None), int):
        return None
    if isinstance(record, Raised):
        frames = tuple(
            (str(f[0]), int(f[1]), str(f[2]))
            for f in record.frames
            if isinstance(f, (list, tuple)) and len(f) == 3
        )
        record = dataclasses.replace(record, frames=frames)
    return record


@final
@dataclasses.dataclass(frozen=True)
class RunState:
    """What children started from now on must do: noise (and its seed) and tracing."""

    noise: bool = False
    seed: int = 0
    run: int = 0
    trace: bool = True


_STATE_FILE: Final = "state"
# Fixed width, so that it is rewritten in place with one pwrite: cheap enough to do twice
# per stress run.
_STATE_RECORD: Final = "{noise:d} {seed:010d} {run:09d} {trace:d}\n"


# -- the status table ------------------------------------------------------------------

# One slot per thread: what it is doing right now. The supervisor reads every process's
# table to see, without stopping anyone, whether all of them wait for each other.
_SLOT: Final = struct.Struct("<qiBxxxIqq16s40s")  # ident, native id, state, seq, since, site
SLOTS: Final = 256
BLOCKED: Final = 2  # in an observed call that waits without a timeout
TIMED: Final = 3  # in an observed call that waits with a timeout
RUNNING: Final = 1  # anything else


@final
@dataclasses.dataclass(frozen=True)
class Slot:
    """One thread's line in a status table."""

    ident: int
    native_id: int
    state: int
    seq: int
    since: int  # time.monotonic_ns() when the state began
    site: int  # an encoded learner site, or -1
    op: str
    obj: str


@final
class StatusTable:
    """This process's status table: a shared-memory file of fixed-size slots."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, _SLOT.size * SLOTS)
            self._map = mmap.mmap(fd, _SLOT.size * SLOTS)
        finally:
            os.close(fd)
        self._seq = [0] * SLOTS

    def set(
        self,
        slot: int,
        ident: int,
        native: int,
        state: int,
        since: int,
        site: int,
        op: str,
        obj: str,
    ) -> None:
        self._seq[slot] += 1
        _SLOT.pack_into(
            self._map,
            slot * _SLOT.size,
            ident,
            native,
            state,
            self._seq[slot],
            since,
            site,
            op.encode()[:16],
            obj.encode()[:40],
        )


def _read_status(path: Path) -> list[Slot]:
    try:
        data = path.read_bytes()
    except OSError:
        return []
    slots = []
    for offset in range(0, len(data) - _SLOT.size + 1, _SLOT.size):
        ident, native, state, seq, since, site, op, obj = _SLOT.unpack_from(data, offset)
        if ident:
            slots.append(
                Slot(
                    ident,
                    native,
                    state,
                    seq,
                    since,
                    site,
                    op.rstrip(b"\0").decode("utf-8", "replace"),
                    obj.rstrip(b"\0").decode("utf-8", "replace"),
                )
            )
    return slots


# -- the folder ------------------------------------------------------------------------


@final
class RunDir:
    """One test's run directory. Every process of the test finds it through the
    environment (:meth:`current`); the supervisor makes it (:meth:`create`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls) -> RunDir:
        return cls(tempfile.mkdtemp(prefix="pytest-kata-"))

    @classmethod
    def current(cls) -> RunDir | None:
        path = os.environ.get(ENV_RUNDIR)
        return cls(path) if path else None

    def environment(self, modules: dict[str, str]) -> dict[str, str]:
        """The variables every process of the test inherits, to find us and the learner."""
        return {ENV_RUNDIR: str(self.path), ENV_MODULES: json.dumps(modules)}

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # -- records -------------------------------------------------------------------------

    def _atomic(self, name: str, text: str) -> None:
        path = self.path / name
        temporary = self.path / f".{name}.{os.getpid()}.tmp"
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            pass  # the test is over and its folder gone: nobody is left to read it

    def write(self, kind: _Kind[R], record: R, key: str | None = None) -> None:
        """Record ``record``; one file per process, or per ``key`` when a process writes
        several records of a kind."""
        pid = getattr(record, "pid")  # noqa: B009 - every record has one
        name = f"{kind.prefix}-{pid}{'-' + key if key else ''}.json"
        self._atomic(name, json.dumps(dataclasses.asdict(record)))  # type: ignore[call-overload]

    def read(self, kind: _Kind[R]) -> dict[int, R]:
        """Every record of ``kind``, by pid (the first, if a process wrote several)."""
        found: dict[int, R] = {}
        for record in self.read_all(kind):
            found.setdefault(getattr(record, "pid"), record)  # noqa: B009
        return found

    def read_all(self, kind: _Kind[R]) -> list[R]:
        records = []
        for path in sorted(self.path.glob(f"{kind.prefix}-*.json")):
            try:
                record = _decode(kind, json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
            if record is not None:
                records.append(record)
        return records

    def has(self, kind: _Kind[Any]) -> bool:
        return any(self.path.glob(f"{kind.prefix}-*.json"))

    def processes(self) -> dict[int, ProcessInfo]:
        """Every process of the test: as it announced itself, else as its parent noted it."""
        return self.read(STARTED) | self.read(REGISTERED)

    # -- the run state ------------------------------------------------------------------

    def write_state(self, state: RunState) -> None:
        record = _STATE_RECORD.format(
            noise=state.noise, seed=state.seed % 10**10, run=state.run % 10**9, trace=state.trace
        ).encode("ascii")
        fd = os.open(self.path / _STATE_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, record, 0)
        finally:
            os.close(fd)

    def read_state(self) -> RunState:
        try:
            text = (self.path / _STATE_FILE).read_text(encoding="ascii")
            noise, seed, run, trace = (int(field) for field in text.split())
        except (OSError, ValueError):
            return RunState()
        return RunState(bool(noise), seed, run, bool(trace))

    # -- the verdict ------------------------------------------------------------------

    def mark_body_done(self) -> None:
        """The test function has returned: what follows (the trace's audit, the leak check)
        is the plugin's own work, not the learner's, and does not count against the
        deadline."""
        self._atomic("body-done", "")

    def body_done(self) -> bool:
        return (self.path / "body-done").exists()

    def write_result(self, result: ResultRecord) -> None:
        self._atomic("result.json", json.dumps(dataclasses.asdict(result)))

    def read_result(self) -> ResultRecord | None:
        """The test's result, if a file of that name holds a JSON object (of any keys)."""
        try:
            data = json.loads((self.path / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return ResultRecord(data.get("outcome"), data.get("nonce"))

    # -- stacks ----------------------------------------------------------------------------

    def stack_path(self, pid: int) -> Path:
        return self.path / f"stack-{pid}.txt"

    def stack_size(self, pid: int) -> int:
        try:
            return self.stack_path(pid).stat().st_size
        except OSError:
            return 0

    def read_stack(self, pid: int, offset: int) -> str:
        """What ``pid`` dumped since the file was ``offset`` bytes long."""
        try:
            with open(self.stack_path(pid), "rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- the trace -----------------------------------------------------------------------

    def trace_path(self, pid: int) -> Path:
        return self.path / f"trace-{pid}.jsonl"

    def open_trace(self, pid: int) -> int | None:
        """A descriptor to append ``pid``'s event batches to."""
        try:
            return os.open(self.trace_path(pid), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            return None

    @staticmethod
    def append_trace(fd: int, batch: Sequence[Sequence[Any]]) -> None:
        """One batch of events, one JSON line: a crash mid-write loses only that line."""
        data = (json.dumps(batch, separators=(",", ":"), default=repr) + "\n").encode()
        with contextlib.suppress(OSError):
            os.write(fd, data)

    def trace_pids(self) -> list[int]:
        pids = []
        for path in self.path.glob("trace-*.jsonl"):
            with contextlib.suppress(ValueError):
                pids.append(int(path.stem.removeprefix("trace-")))
        return sorted(pids)

    def read_trace(self, pid: int) -> Iterator[list[Any]]:
        """``pid``'s events, raw, in the order it recorded them."""
        try:
            text = self.trace_path(pid).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        for line in text.splitlines():
            try:
                batch = json.loads(line)
            except ValueError:
                continue
            if isinstance(batch, list):
                yield from (event for event in batch if isinstance(event, list))

    # -- status tables --------------------------------------------------------------------

    def control_address(self) -> str:
        """Where the process coordinator of a controlled run listens (a Unix socket): it
        exists only while such a run is on. Its messages are :mod:`.coordinate`'s."""
        return str(self.path / "control.sock")

    def status_path(self, pid: int) -> Path:
        return self.path / f"status-{pid}"

    def status_table(self, pid: int) -> StatusTable | None:
        try:
            return StatusTable(str(self.status_path(pid)))
        except OSError:
            return None

    def read_status(self, pid: int) -> list[Slot]:
        return _read_status(self.status_path(pid))
