"""The box: one grading run of untrusted learner code, walled off from the machine.

A grading command runs one whole inner ``python -m pytest ...`` per submission in a
:class:`Box`, as root-in-the-box with only :data:`BOX_CAPABILITIES`; its per-test sandbox
forks, moves the fork into a :class:`TestGroup` and drops to ``nobody`` (65534) before learner
code runs.  :func:`probe` tries each tool for real, strongest first, and caches the answer;
``probe(prefer=...)`` or ``PYTEST_KATA_BOX=bubblewrap|unshare|none`` starts lower down.

- ``bubblewrap``: ``bwrap --ro-bind / /``, fresh ``/proc``, minimal ``/dev``, private tmpfs
  ``/tmp`` and ``/dev/shm`` (1777), ``readonly``/``writable`` bound at the same path,
  ``hidden`` directories an empty read-only tmpfs (hidden files: ``/dev/null``), new
  pid/net/ipc/uts/mount namespaces (bwrap brings ``lo`` up), ``--die-with-parent
  --new-session``; as root ``--cap-drop ALL --cap-add`` the capabilities (bwrap leaves the
  bounding set full but sets no_new_privs, so no exec gains more).  Not root: a user
  namespace, and no second user.
- ``unshare`` (root only): ``unshare --pid --fork --kill-child --mount-proc --net --ipc --uts
  --mount`` running ``_UNSHARE_INIT``, which makes the same mounts (every mount re-mounted
  read-only first), brings ``lo`` up, stays pid 1 as the reaper and runs the command as pid 2
  with the capability bounding set cut down and no_new_privs.
- ``none``: the command runs plainly, in the box's cgroup if there is one, else in a new
  session; the notes say what is missing.

``popen`` starts a trampoline (``python -I -S``) that writes its pid into the box's
``cgroup.procs``, asks for SIGKILL when its parent dies and execs the tool, so everything is in
the cgroup from its first instruction.  :meth:`Box.kill` ends everything by cgroup (v2
``cgroup.kill``, else freeze, SIGKILL every member, thaw, until empty) and by pid namespace
(kill its init and the kernel kills the rest), never by name.

Cgroups: v2 when a cgroup2 mount offers ``pids``, else v1 (the pids, memory and freezer
hierarchies, a directory of the same name in each).  A box is ``<parent>/katabox-<pid>-<n>``
with its limits (``pids.max``, ``memory.max`` / ``memory.limit_in_bytes``); its own processes
sit in the leaf ``<box>/grader`` (v2's "no internal processes" rule), each test in
``<box>/<name>``.  The parent is our own cgroup under v1 (so the box stays inside the caller's
limits); under v2 the nearest of our cgroup and its ancestors that is writable and has ``pids``
in ``cgroup.subtree_control``.  Inside, ``PYTEST_KATA_CGROUP`` is ``v2:<box dir>`` or
``v1:pids=<dir>;memory=<dir>;freezer=<dir>``; those directories are bound read-write at the
same path (the rest of ``/sys/fs/cgroup`` is read-only; no cgroup namespace, so paths agree
inside and out).  :meth:`TestGroup.create` makes its group there; without the variable, where
a box would go, else None.

Verified here (Debian 12, kernel 6.18, bwrap 0.8.0, cgroup v1 plus a cgroup2 mount with only
hugetlb), as root, by tests/test_box.py for bwrap and unshare: outside processes invisible;
``/`` read-only, writable binds writable, hidden paths empty; 127.0.0.1 works, other addresses
unreachable; the capabilities suffice to setuid to nobody in a fork, SIGKILL nobody's process,
list its ``/proc/<pid>/fd``, read and remove what it wrote (0600 files, a 0700 directory) in
a root-owned directory, and lack CAP_SYS_ADMIN; a setsid() double-forked grandchild and a
fork storm are gone after :meth:`Box.close`, and everything dies with the first process; a
:class:`TestGroup` stops a fork burst exactly.  By hand as ``nobody``: bwrap in a user
namespace, no cgroup, no learner user.  Not verified: cgroup v2 (no v2 ``pids`` here).

Read, not verified, about GitHub's hosted runners:

- ubuntu-22.04/24.04 use cgroup v2 only (libcgroup/libcgroup#454 runs its v2 tests on
  ``ubuntu-latest``); jobs run as ``runner`` with passwordless sudo (StepSecurity's
  harden-runner docs).  The job's cgroup is root-owned (actions/runner-images#3536), so
  without sudo there is no delegation; the image enables lingering for the user
  (images/ubuntu/assets/post-gen/systemd-linger.sh), so ``systemd-run --user --scope -p
  Delegate=yes`` may give one.  With sudo, root creates cgroups anywhere.
- bubblewrap is not among the image's apt packages (images/ubuntu/Ubuntu2404-Readme.md,
  20250202): ``sudo apt-get install bubblewrap``.
- ubuntu-24.04 sets ``kernel.apparmor_restrict_unprivileged_userns=1``: unprivileged bwrap and
  unshare fail ("setting up uid map: Permission denied", "unshare: Operation not permitted")
  unless a job runs ``sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`` or loads
  an AppArmor profile for ``/usr/bin/bwrap``; a runner-images PR to change the default was
  closed unmerged (actions/runner-images#10443, #11489; containers/bubblewrap#632;
  ubuntu.com/blog/ubuntu-23-10-restricted-unprivileged-user-namespaces).  The restriction is
  on unprivileged user namespaces, so we expect ``sudo`` + bwrap to work on both images.
- In Docker, bwrap and unshare fail unless run with ``--cap-add SYS_ADMIN --security-opt
  seccomp=unconfined --security-opt apparmor=unconfined`` (the default seccomp profile blocks
  namespace creation; containers/bubblewrap#505).  With ``--network none --read-only`` the
  box is then ``none``: root keeps Docker's default CAP_SETUID/SETGID/KILL/DAC_OVERRIDE/FOWNER/
  CHOWN (no SYS_PTRACE) so learner code can still run as nobody, but ``/sys/fs/cgroup`` is
  read-only there, so nothing caps processes and a setsid() process can outlive the box.

``--die-with-parent`` and the trampoline's parent-death signal fire when the *thread* that
called :meth:`Box.popen` exits: call it from a thread that outlives the box.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, cast

__all__ = [
    "BOX_CAPABILITIES",
    "CGROUP_ENV",
    "FORCE_ENV",
    "LEARNER_UID",
    "TOOLS",
    "Box",
    "BoxSpec",
    "Isolation",
    "TestGroup",
    "probe",
]

LEARNER_UID: Final = 65534
CGROUP_ENV: Final = "PYTEST_KATA_CGROUP"
FORCE_ENV: Final = "PYTEST_KATA_BOX"
TOOLS: Final = ("bubblewrap", "unshare", "none")
NAMESPACES: Final = ("pid", "net", "mount", "ipc", "uts")
BOX_CAPABILITIES: Final = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SYS_PTRACE": 19,
}
_V1_CONTROLLERS: Final = ("pids", "memory", "freezer")
_GRADER_LEAF: Final = "grader"
_KILL_TIMEOUT: Final = 10.0
_PROBE_TIMEOUT: Final = 30.0
_names = itertools.count(1)


# --------------------------------------------------------------------------- the answer


@dataclass(frozen=True)
class Isolation:
    """What this host lets a box do."""

    tool: str  # "bubblewrap", "unshare" or "none"
    namespaces: tuple[str, ...]
    learner_user: str | None  # "nobody (65534)" when learner code can run as another user
    cgroup: str | None  # "v2", "v1" or None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "tool": self.tool,
            "namespaces": list(self.namespaces),
            "learner_user": self.learner_user,
            "cgroup": self.cgroup,
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        spaces = f"{', '.join(self.namespaces)} namespaces" if self.namespaces else "no namespaces"
        user = (
            f"learner code as {self.learner_user.split(' ')[0]}"
            if self.learner_user
            else "learner code as the grader's own user"
        )
        limits = f"cgroup {self.cgroup} limits" if self.cgroup else "no cgroup limits"
        return f"{self.tool}: {spaces}; {user}; {limits}"


# --------------------------------------------------------------------------- cgroups


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _unescape(text: str) -> str:
    """Undo /proc/self/mountinfo's octal escapes (a space is \\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(root, mount point, filesystem type, super options) of every mount we can see."""
    found = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        left, _, right = line.partition(" - ")
        mine, theirs = left.split(), right.split()
        if len(mine) < 5 or len(theirs) < 3:
            continue
        found.append((_unescape(mine[3]), _unescape(mine[4]), theirs[0], set(theirs[2].split(","))))
    return found


def _own_cgroups() -> dict[str, str]:
    """Controller (``""`` for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths[""] = parts[2]
        for controller in parts[1].split(","):
            if controller:
                paths[controller] = parts[2]
    return paths


def _inside(mount_root: str, mount_point: str, cgroup_path: str) -> Path | None:
    """The directory of ``cgroup_path`` under a mount of the hierarchy rooted at ``mount_root``."""
    if mount_root != "/" and not (
        cgroup_path == mount_root or cgroup_path.startswith(mount_root.rstrip("/") + "/")
    ):
        return None
    rel = os.path.relpath(cgroup_path, mount_root) if mount_root != "/" else cgroup_path
    rel = "" if rel == "." else rel.lstrip("/")
    path = Path(mount_point, rel)
    return path if path.is_dir() else None


def _cgroup_layout() -> tuple[str | None, dict[str, Path], list[str]]:
    """Which cgroup version to use, this process's own cgroup directory (per controller for v1),
    and notes on what is missing."""
    mounts, own = _mounts(), _own_cgroups()
    notes: list[str] = []
    for root, point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            mine = _inside(root, point, own[""])
            top = Path(point)
            if mine is not None and "pids" in _read(top / "cgroup.controllers").split():
                return "v2", {"": mine}, notes
    dirs: dict[str, Path] = {}
    for controller in _V1_CONTROLLERS:
        for root, point, fstype, options in mounts:
            if fstype == "cgroup" and controller in options and controller in own:
                mine = _inside(root, point, own[controller])
                if mine is not None:
                    dirs[controller] = mine
                    break
    if "pids" in dirs:
        notes += [
            f"no cgroup v1 {name} hierarchy: {why}"
            for name, why in (
                ("memory", "the box's memory is not capped"),
                ("freezer", "a fork storm is killed without freezing it first"),
            )
            if name not in dirs
        ]
        return "v1", dirs, notes
    notes.append("no cgroup with the pids controller: the number of processes is not capped")
    return None, {}, notes


@dataclass(frozen=True)
class _Cgroup:
    """One cgroup: one directory under v2, one directory per controller (same name) under v1."""

    version: str
    dirs: tuple[tuple[str, Path], ...]

    @property
    def main(self) -> Path:
        return self.dirs[0][1]

    def dir(self, controller: str) -> Path | None:
        if self.version == "v2":
            return self.main
        return dict(self.dirs).get(controller)

    def child(self, name: str) -> _Cgroup:
        """Make the child cgroup ``name`` (in every hierarchy); OSError if any fails."""
        made: list[Path] = []
        try:
            for _, path in self.dirs:
                (path / name).mkdir()
                made.append(path / name)
        except OSError:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return _Cgroup(self.version, tuple((c, p / name) for c, p in self.dirs))

    def unique_child(self, name: str) -> _Cgroup:
        base = re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:60].lstrip(".") or "group"
        for n in range(1, 1000):
            candidate = base if n == 1 else f"{base}-{n}"
            if any((path / candidate).exists() for _, path in self.dirs):
                continue
            with contextlib.suppress(FileExistsError):
                return self.child(candidate)
        raise FileExistsError(f"no free cgroup name like {base!r} in {self.main}")

    def delegate(self) -> list[str]:
        """v2: let children have pids/memory limits; this cgroup must then stay empty."""
        notes: list[str] = []
        if self.version == "v2":
            offered = _read(self.main / "cgroup.controllers").split()
            for controller in ("pids", "memory"):
                if controller not in offered:
                    notes.append(f"cgroup v2 {controller} controller not available")
                    continue
                try:
                    _write(self.main / "cgroup.subtree_control", f"+{controller}")
                except OSError as exc:
                    notes.append(f"cannot enable cgroup v2 {controller} for children: {exc}")
        return notes

    def limit(self, max_pids: int | None, max_memory: int | None) -> list[str]:
        """Set the limits; pids must work, memory is best effort (the notes say what failed)."""
        notes = []
        pids = self.dir("pids")
        if max_pids is not None:
            if pids is None:
                raise OSError("no pids controller")
            _write(pids / "pids.max", str(max_pids))
        memory = self.dir("memory")
        if max_memory is not None:
            name = "memory.max" if self.version == "v2" else "memory.limit_in_bytes"
            if memory is None or not (memory / name).exists():
                notes.append("memory is not capped: no memory controller here")
            else:
                try:
                    _write(memory / name, str(max_memory))
                    if self.version == "v2" and (memory / "memory.swap.max").exists():
                        _write(memory / "memory.swap.max", "0")
                except OSError as exc:
                    notes.append(f"memory is not capped: {exc}")
        return notes

    def procs_files(self) -> list[Path]:
        return [path / "cgroup.procs" for _, path in self.dirs]

    def add(self, pid: int) -> None:
        for procs in self.procs_files():
            _write(procs, str(pid))

    def _tree(self) -> Iterator[Path]:
        for _, top in self.dirs:
            for here, _dirs, _files in os.walk(top):
                yield Path(here)

    def members(self) -> list[int]:
        """Every process in this cgroup and its children (0 = outside our pid namespace)."""
        pids: set[int] = set()
        for here in self._tree():
            for word in _read(here / "cgroup.procs").split():
                if word.isdigit() and int(word) > 0:
                    pids.add(int(word))
        return sorted(pids)

    def populated(self) -> bool:
        if self.version == "v2":
            events = _read(self.main / "cgroup.events")
            if "populated" in events:
                return "populated 1" in events
        return bool(self.members())

    def hit_pid_limit(self) -> bool:
        """A fork in this cgroup or below was refused by a pids limit.  Every ``pids.events``
        of the subtree is read: v2 counts a refusal in the cgroup whose limit was hit and its
        ancestors, but v1 (and v2 mounted with pids_localevents) only in the forking one."""
        pids = self.dir("pids")
        if pids is None:
            return False
        for here, _dirs, _files in os.walk(pids):
            for line in _read(Path(here, "pids.events")).splitlines():
                key, _, value = line.partition(" ")
                if key == "max" and value.strip().isdigit() and int(value) > 0:
                    return True
        return False

    def _freeze(self, frozen: bool) -> bool:
        if self.version == "v2":
            path = self.main / "cgroup.freeze"
            text = "1" if frozen else "0"
        else:
            freezer = self.dir("freezer")
            if freezer is None:
                return False
            path = freezer / "freezer.state"
            text = "FROZEN" if frozen else "THAWED"
        try:
            _write(path, text)
        except OSError:
            return False
        if frozen and self.version == "v1":  # FREEZING until every task stopped
            deadline = time.monotonic() + 1.0
            while _read(path).strip() != "FROZEN" and time.monotonic() < deadline:
                time.sleep(0.002)
        return True

    def kill_all(self, timeout: float = _KILL_TIMEOUT) -> bool:
        """SIGKILL everything in this cgroup and below until it is empty; False on timeout."""
        deadline = time.monotonic() + timeout
        killer = self.main / "cgroup.kill" if self.version == "v2" else None
        while self.populated():
            if killer is not None and killer.exists():
                with contextlib.suppress(OSError):
                    _write(killer, "1")
            else:
                frozen = self._freeze(True)
                try:
                    for pid in self.members():
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
                finally:  # a frozen task cannot die: never leave the group frozen
                    if frozen:
                        self._freeze(False)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def remove(self, timeout: float = _KILL_TIMEOUT) -> bool:
        """Kill what is left and remove this cgroup and its children, deepest first."""
        self.kill_all(timeout)
        deadline = time.monotonic() + timeout
        for _, top in self.dirs:
            if not top.exists():
                continue
            dirs = sorted(
                (Path(here) for here, _d, _f in os.walk(top)),
                key=lambda p: len(p.parts),
                reverse=True,
            )
            for path in dirs:
                while True:
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # EBUSY while the last processes finish exiting
                        if time.monotonic() > deadline:
                            return False
                        time.sleep(0.01)
        return True

    def env_value(self) -> str:
        if self.version == "v2":
            return f"v2:{self.main}"
        return "v1:" + ";".join(f"{c}={p}" for c, p in self.dirs)

    @classmethod
    def from_env(cls, value: str) -> _Cgroup | None:
        version, _, rest = value.partition(":")
        if version == "v2" and rest:
            return cls("v2", (("", Path(rest)),)) if Path(rest).is_dir() else None
        if version == "v1":
            dirs = []
            for item in rest.split(";"):
                controller, _, path = item.partition("=")
                if controller in _V1_CONTROLLERS and Path(path).is_dir():
                    dirs.append((controller, Path(path)))
            dirs.sort(key=lambda d: _V1_CONTROLLERS.index(d[0]))
            if dirs and dirs[0][0] == "pids":
                return cls("v1", tuple(dirs))
        return None


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _parent_cgroup() -> tuple[_Cgroup | None, list[str]]:
    """Where new box/test cgroups go when we are not inside a box (see the module docstring)."""
    version, own, notes = _cgroup_layout()
    if version == "v1":
        if not _writable_dir(own["pids"]):
            return None, [*notes, f"cannot create cgroups in {own['pids']} (not writable)"]
        usable = [(c, p) for c, p in own.items() if _writable_dir(p)]
        notes += [
            f"cannot use the cgroup v1 {c} hierarchy here" for c in own if c not in dict(usable)
        ]
        return _Cgroup("v1", tuple(usable)), notes
    if version == "v2":
        here = own[""]
        mount_top = here
        while (mount_top.parent / "cgroup.controllers").exists() and mount_top != mount_top.parent:
            mount_top = mount_top.parent
        candidate: Path | None = here
        while candidate is not None:
            if (
                _writable_dir(candidate)
                and "pids" in _read(candidate / "cgroup.subtree_control").split()
            ):
                return _Cgroup("v2", (("", candidate),)), notes
            candidate = None if candidate == mount_top else candidate.parent
        return None, [
            *notes,
            f"no writable cgroup v2 directory with pids delegated at or above {here}",
        ]
    return None, notes


# --------------------------------------------------------------------------- the tools


_TRAMPOLINE: Final = r"""
import ctypes, os, signal, sys
a = sys.argv[1:]
i = a.index('--')
ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)
if os.getppid() != int(a[0]):
    os._exit(125)
for f in a[1:i]:
    try:
        fd = os.open(f, os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except OSError as e:
        sys.stderr.write('pytest-katas box: cannot join the cgroup %s: %s\n' % (f, e))
        os._exit(125)
try:
    os.execvp(a[i + 1], a[i + 1:])
except OSError as e:
    sys.stderr.write('pytest-katas box: cannot run %s: %s\n' % (a[i + 1], e))
    os._exit(127)
"""

# pid 1 of an ``unshare`` box: make the mounts, bring lo up, run the command as pid 2, reap.
_UNSHARE_INIT: Final = r"""
import ctypes, fcntl, json, os, re, signal, socket, struct, sys
cfg = json.loads(sys.argv[1])
argv = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC = 1, 2, 4, 8, 32, 4096, 16384
PER_MOUNT = {'nosuid': NOSUID, 'nodev': NODEV, 'noexec': NOEXEC, 'noatime': 1024,
             'nodiratime': 2048, 'relatime': 1 << 21}

def fail(what, err=None):
    err = err if err is not None else ctypes.get_errno()
    sys.stderr.write('pytest-katas box: %s: %s\n' % (what, os.strerror(err)))
    os._exit(126)

def mount(src, dst, fstype, flags, data=None, must=True):
    enc = lambda s: s.encode() if s is not None else None
    if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
        if must:
            fail('mount %s' % dst)
        return False
    return True

def ensure(path, like_dir):
    if os.path.lexists(path):
        return
    try:
        if like_dir:
            os.makedirs(path)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, 'a').close()
    except OSError as e:
        fail('create the mount point %s' % path, e.errno)

# open what we bind before anything hides it
sources = {}
for path, _mode in cfg['binds']:
    try:
        sources[path] = os.open(path, os.O_PATH)
    except OSError as e:
        fail('open %s' % path, e.errno)
devices = {}
for name in ('null', 'zero', 'full', 'random', 'urandom', 'tty'):
    try:
        devices[name] = os.open('/dev/' + name, os.O_PATH)
    except OSError:
        pass

# every mount read-only, except the new /proc
unesc = lambda s: re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), s)
with open('/proc/self/mountinfo') as f:
    lines = f.read().splitlines()
for line in lines:
    fields = line.split(' - ')[0].split()
    point, opts = unesc(fields[4]), fields[5].split(',')
    if point == '/proc' or point.startswith('/proc/'):
        continue
    flags = REMOUNT | BIND | RDONLY
    for opt in opts:
        flags |= PER_MOUNT.get(opt, 0)
    mount(None, point, None, flags, must=point == '/')

# private /tmp, a minimal /dev, private /dev/shm
mount('tmpfs', '/tmp', 'tmpfs', NOSUID | NODEV, 'mode=1777')
mount('tmpfs', '/dev', 'tmpfs', NOSUID | NOEXEC, 'mode=0755')
for name, fd in devices.items():
    ensure('/dev/' + name, False)
    mount('/proc/self/fd/%d' % fd, '/dev/' + name, None, BIND)
for d in ('/dev/pts', '/dev/shm'):
    ensure(d, True)
mount('devpts', '/dev/pts', 'devpts', NOSUID | NOEXEC, 'newinstance,ptmxmode=0666,mode=620',
      must=False)
mount('tmpfs', '/dev/shm', 'tmpfs', NOSUID | NODEV, 'mode=1777')
for src, dst in (('pts/ptmx', 'ptmx'), ('/proc/self/fd', 'fd'), ('/proc/self/fd/0', 'stdin'),
                 ('/proc/self/fd/1', 'stdout'), ('/proc/self/fd/2', 'stderr')):
    os.symlink(src, '/dev/' + dst)
mount(None, '/dev', None, REMOUNT | BIND | RDONLY | NOSUID | NOEXEC)

# the binds and the hidden paths, outermost first: a bind inside a hidden folder shows
# through it (the interpreter inside a private home, say)
for kind, path, extra in cfg['mounts']:
    if kind == 'bind':
        fd = sources[path]
        ensure(path, os.path.isdir('/proc/self/fd/%d' % fd))
        mount('/proc/self/fd/%d' % fd, path, None, BIND | REC)
        mount(None, path, None, REMOUNT | BIND | NOSUID | NODEV | (RDONLY if extra == 'ro' else 0))
    elif extra:
        ensure(path, True)
        mount('tmpfs', path, 'tmpfs', NOSUID | NODEV, 'mode=0755')
    else:  # reads as empty
        ensure(path, False)
        mount('/proc/self/fd/%d' % devices['null'], path, None, BIND)
        mount(None, path, None, REMOUNT | BIND | RDONLY | NOSUID)
for kind, path, extra in cfg['mounts']:  # a hidden folder is read-only once its binds are in
    if kind == 'hide' and extra:
        mount(None, path, None, REMOUNT | BIND | RDONLY | NOSUID | NODEV)

# loopback up, our own hostname
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = fcntl.ioctl(s, 0x8913, struct.pack('16sH22x', b'lo', 0))
    flags = struct.unpack('16sH', got[:18])[1]
    fcntl.ioctl(s, 0x8914, struct.pack('16sH22x', b'lo', flags | 1))
    s.close()
except OSError as e:
    fail('bring lo up', e.errno)
try:
    socket.sethostname(cfg['hostname'])
except OSError:
    pass

child = os.fork()
if child == 0:
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        if cfg['keep_caps'] is not None:
            with open('/proc/sys/kernel/cap_last_cap') as f:
                last = int(f.read())
            for cap in range(last + 1):
                if cap not in cfg['keep_caps'] and libc.prctl(24, cap, 0, 0, 0) != 0:
                    fail('drop capability %d' % cap)
            if libc.prctl(38, 1, 0, 0, 0) != 0:
                fail('set no_new_privs')
        os.chdir(cfg['cwd'])
        os.execvp(argv[0], argv)
    except OSError as e:
        sys.stderr.write('pytest-katas box: cannot run %s: %s\n' % (argv[0], e))
    os._exit(127)

# pid 1: no capabilities left, reap every orphan, leave (and take the namespace) with the child
class Head(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]
libc.capset(ctypes.byref(Head(0x20080522, 0)), (Data * 2)())
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        os._exit(0)
    except InterruptedError:
        continue
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
"""

# what the probe runs inside a trial box; prints one JSON line
_CHECK: Final = r"""
import json, os, socket, sys
outer, contained = int(sys.argv[1]), sys.argv[2] == '1'
out = {}
if contained and outer > 1000:
    try:
        os.kill(outer, 0)
        out['sees_outside'] = True
    except ProcessLookupError:
        out['sees_outside'] = False
    except PermissionError:
        out['sees_outside'] = True
try:
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    socket.create_connection(srv.getsockname(), timeout=2).close()
    out['loopback'] = True
except OSError:
    out['loopback'] = False
if contained:
    try:
        open('/.katabox-probe', 'w').close()
        os.unlink('/.katabox-probe')
        out['ro_root'] = False
    except OSError:
        out['ro_root'] = True
if os.geteuid() == 0:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid({uid})
            os.setuid({uid})
            os._exit(0 if os.getuid() == {uid} else 1)
        except OSError:
            os._exit(1)
    out['setuid'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
print(json.dumps(out))
""".replace("{uid}", str(LEARNER_UID))


def _depth(path: str) -> int:
    return len(Path(path).parts)


def python_paths() -> list[Path]:
    """What any Python in the box needs of the host: this interpreter, its environment,
    and the plugin's own package (an editable install lives in a checkout)."""
    real = Path(os.path.realpath(sys.executable))
    paths = {Path(sys.base_prefix), Path(sys.prefix), real.parent.parent}
    paths.add(Path(__file__).resolve().parent.parent)
    return sorted(p.resolve() for p in paths)


def _binds(spec: BoxSpec, cgroup_dirs: Sequence[Path]) -> list[tuple[str, str]]:
    """(path, "ro"/"rw") of every bind whose source exists, outermost first; a path both
    read-only and writable is writable."""
    wanted: dict[str, str] = {}
    for path in [*python_paths(), *spec.readonly]:
        wanted[os.path.abspath(path)] = "ro"
    for path in [*spec.writable, *cgroup_dirs]:
        wanted[os.path.abspath(path)] = "rw"
    found = [(path, mode) for path, mode in wanted.items() if os.path.exists(path)]
    return sorted(found, key=lambda item: _depth(item[0]))


def _hidden(spec: BoxSpec) -> list[tuple[str, bool]]:
    """(path, is a directory) of every hidden path that exists, outermost first: a directory
    becomes an empty read-only tmpfs, a file /dev/null (reads nothing, keeps nothing)."""
    found = {os.path.abspath(p): os.path.isdir(p) for p in spec.hidden if os.path.lexists(p)}
    return sorted(found.items(), key=lambda item: _depth(item[0]))


def _mounts_in_order(spec: BoxSpec, cgroup_dirs: Sequence[Path]) -> list[tuple[str, str, Any]]:
    """("bind", path, "ro"/"rw") and ("hide", path, is a directory), outermost first, a
    hidden folder before what is bound inside it."""
    mounts: list[tuple[str, str, Any]] = [("hide", p, d) for p, d in _hidden(spec)]
    mounts += [("bind", p, m) for p, m in _binds(spec, cgroup_dirs)]
    return sorted(mounts, key=lambda m: (_depth(m[1]), m[0] != "hide"))


# What a minimal root shows of the host (bubblewrap only): the system's programs and
# libraries and /etc, read-only. Everything else of the host, other checkouts of the
# katas' solutions included, is simply not there.
_SYSTEM_DIRS: Final = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")


def _minimal_root() -> list[str]:
    args: list[str] = []
    for name in _SYSTEM_DIRS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _bwrap_argv(
    bwrap: str, spec: BoxSpec, cgroup_dirs: Sequence[Path], root: bool, argv: Sequence[str]
) -> list[str]:
    args = [
        bwrap,
        *_minimal_root(),
        "--proc", "/proc",
        "--dev", "/dev",
        "--perms", "1777", "--tmpfs", "/tmp",  # noqa: S108 - a private tmpfs, not the host's
        "--perms", "1777", "--tmpfs", "/dev/shm",  # noqa: S108 - the same, for semaphores
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--hostname", "katabox",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
    ]  # fmt: skip
    if root:
        for cap in BOX_CAPABILITIES:
            args += ["--cap-add", cap]
    else:
        args.append("--unshare-user")
    hidden = [Path(p) for p, is_dir in _hidden(spec) if is_dir] + [Path("/tmp")]  # noqa: S108
    made: set[Path] = set()
    for kind, path, extra in _mounts_in_order(spec, cgroup_dirs):
        if kind == "bind":
            # bwrap makes missing folders private (0700): inside a hidden folder, make the
            # way to a bind searchable by the learner's user first
            for folder in reversed(Path(path).parents):
                inside = any(h in folder.parents for h in hidden)
                if inside and folder not in made:
                    made.add(folder)
                    args += ["--perms", "0755", "--dir", str(folder)]
            args += ["--ro-bind" if extra == "ro" else "--bind", path, path]
        elif extra:
            args += ["--tmpfs", path]
        else:
            args += ["--dev-bind", "/dev/null", path]  # read-only would make it nodev
    for path, is_dir in _hidden(spec):  # read-only once what shows through is bound
        if is_dir:
            args += ["--remount-ro", path]
    args += ["--remount-ro", "/"]  # the minimal root's own folder is read-only too
    args += ["--chdir", str(spec.cwd), "--", *argv]
    return args


def _unshare_argv(
    unshare: str, spec: BoxSpec, cgroup_dirs: Sequence[Path], argv: Sequence[str]
) -> list[str]:
    config = {
        "binds": _binds(spec, cgroup_dirs),
        "mounts": _mounts_in_order(spec, cgroup_dirs),
        "cwd": str(spec.cwd),
        "keep_caps": sorted(BOX_CAPABILITIES.values()),
        "hostname": "katabox",
    }
    return [
        unshare,
        "--pid", "--fork", "--kill-child", "--mount-proc",
        "--net", "--ipc", "--uts", "--mount", "--propagation", "private",
        "--", sys.executable, "-I", "-S", "-c", _UNSHARE_INIT, json.dumps(config), *argv,
    ]  # fmt: skip


def _learner_name() -> str:
    try:
        name = pwd.getpwuid(LEARNER_UID).pw_name
    except KeyError:
        name = "uid"
    return f"{name} ({LEARNER_UID})"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _trial(tool: str, path: str | None, root: bool) -> tuple[dict[str, Any] | None, str]:
    """Run the check script through ``tool``; its findings, or None and why it failed."""
    spec = BoxSpec(env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=Path("/"))
    check = [sys.executable, "-I", "-S", "-c", _CHECK, str(os.getpid())]
    if tool == "bubblewrap" and path:
        argv = _bwrap_argv(path, spec, [], root, [*check, "1"])
    elif tool == "unshare" and path:
        argv = _unshare_argv(path, spec, [], [*check, "1"])
    else:
        argv = [*check, "0"]
    try:
        done = subprocess.run(
            argv,
            env=spec.env,
            cwd="/",
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, str(exc)
    if done.returncode != 0:
        return None, _last_line(done.stderr.decode(errors="replace"))
    try:
        found = json.loads(done.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, "the trial printed nothing useful"
    return (found, "") if isinstance(found, dict) else (None, "the trial printed no object")


def _cgroup_trial() -> tuple[str | None, list[str]]:
    parent, notes = _parent_cgroup()
    if parent is None:
        return None, notes
    try:
        group = parent.unique_child(f"katabox-probe-{os.getpid()}")
    except OSError as exc:
        return None, [*notes, f"cannot create a cgroup under {parent.main}: {exc}"]
    try:
        group.limit(8, None)
        if group.version == "v2":
            notes += group.delegate()
    except OSError as exc:
        return None, [*notes, f"cannot set pids.max in {group.main}: {exc}"]
    finally:
        group.remove(timeout=2.0)
    return parent.version, notes


_cache: dict[str, Isolation] = {}


def probe(refresh: bool = False, prefer: str | None = None) -> Isolation:
    """What this host lets a box do, found by trying it; cached per starting tool.

    ``prefer`` (else ``$PYTEST_KATA_BOX``) is the strongest tool to try: "bubblewrap" (the
    default), "unshare" or "none"."""
    start = prefer or os.environ.get(FORCE_ENV) or TOOLS[0]
    notes: list[str] = []
    if start not in TOOLS:
        notes.append(f"unknown box tool {start!r} (want one of {', '.join(TOOLS)})")
        start = TOOLS[0]
    if not refresh and start in _cache:
        return _cache[start]
    root = os.geteuid() == 0
    cgroup, cgroup_notes = _cgroup_trial()
    notes += cgroup_notes
    tool, found = "none", None
    for candidate in TOOLS[TOOLS.index(start) :]:
        if candidate == "none":
            found, why = _trial("none", None, root)
            if found is None:
                notes.append(f"even a plain trial run failed: {why}")
            break
        binary = shutil.which("bwrap" if candidate == "bubblewrap" else "unshare")
        if binary is None:
            notes.append(f"{candidate} is not installed")
            continue
        if candidate == "unshare" and not root:
            notes.append("unshare needs root")
            continue
        found, why = _trial(candidate, binary, root)
        if found is None:
            notes.append(f"{candidate} failed: {why}")
            continue
        if found.get("sees_outside") or not found.get("ro_root", True):
            notes.append(f"{candidate} ran but did not isolate; not used")
            continue
        tool = candidate
        break
    namespaces: tuple[str, ...] = ()
    if tool != "none":
        namespaces = NAMESPACES if root else (*NAMESPACES, "user")
        if found is not None and not found.get("loopback"):
            notes.append("loopback is down inside the box: 127.0.0.1 does not work")
    else:
        notes.append("no namespaces: learner code sees the machine's processes, files and network")
    learner = None
    if found is not None and found.get("setuid"):
        learner = _learner_name()
    elif not root:
        notes.append("not root: learner code runs as the grader's own user")
    else:
        notes.append(f"cannot switch to uid {LEARNER_UID}: learner code runs as root")
    if tool == "none" and cgroup is None:
        notes.append(
            "no cgroup and no pid namespace: a process that calls setsid() can outlive the box"
        )
    result = Isolation(tool, namespaces, learner, cgroup, tuple(notes))
    _cache[start] = result
    return result


# --------------------------------------------------------------------------- the box


def _default_env() -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass
class BoxSpec:
    """What the box shows and allows; paths are bound at the same path inside."""

    readonly: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)  # dirs: empty read-only; files: /dev/null
    max_pids: int = 512  # for the whole box
    max_memory: int = 4 << 30  # bytes, for the whole box
    env: dict[str, str] = field(default_factory=_default_env)  # the whole environment inside
    cwd: Path = Path("/")


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, ..."""
    text = _read(Path(f"/proc/{pid}/stat"))
    return text.rpartition(")")[2].split() if text else None


def _children(pid: int) -> list[int]:
    text = _read(Path(f"/proc/{pid}/task/{pid}/children"))
    return [int(word) for word in text.split() if word.isdigit()]


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat else None


def _alive(pid: int, started: str | None) -> bool:
    """``pid`` is still the process that started at ``started`` and has not exited."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[19] == started


class Box:
    """One box; start commands in it with :meth:`popen`, end it with :meth:`close`."""

    _CONTROLLED: ClassVar[frozenset[str]] = frozenset(
        {"env", "cwd", "start_new_session", "preexec_fn", "process_group", "executable", "shell"}
    )

    def __init__(self, spec: BoxSpec, isolation: Isolation | None = None) -> None:
        self.spec = spec
        self.isolation = isolation if isolation is not None else probe()
        self.notes: list[str] = []  # what this box could not set up
        self._procs: list[subprocess.Popen[bytes]] = []
        self._started: dict[subprocess.Popen[bytes], str] = {}  # start time of each command
        self._cgroup: _Cgroup | None = None
        self._leaf: _Cgroup | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None  # a forgotten box, at exit
        self._closed = False
        if self.isolation.cgroup is not None:
            self._make_cgroup()
        for kind, paths in (("readonly", spec.readonly), ("writable", spec.writable)):
            self.notes += [
                f"{kind} path {p} does not exist: not bound" for p in paths if not p.exists()
            ]

    def _make_cgroup(self) -> None:
        parent, notes = _parent_cgroup()
        self.notes += notes
        if parent is None:
            return
        try:
            box = parent.unique_child(f"katabox-{os.getpid()}-{next(_names)}")
        except OSError as exc:
            self.notes.append(f"cannot create the box's cgroup: {exc}")
            return
        try:
            self.notes += box.limit(self.spec.max_pids, self.spec.max_memory)
            self.notes += box.delegate()
            self._leaf = box.child(_GRADER_LEAF)
        except OSError as exc:
            self.notes.append(f"cannot set up the box's cgroup {box.main}: {exc}")
            box.remove(timeout=2.0)
            return
        self._cgroup = box
        self._cleanup = weakref.finalize(self, box.remove)

    @property
    def cgroup_env(self) -> str | None:
        """The value of ``PYTEST_KATA_CGROUP`` inside, when the box has a cgroup."""
        return self._cgroup.env_value() if self._cgroup is not None else None

    def members(self) -> list[int]:
        """Pids (in our namespace) of every process in the box's cgroup."""
        return self._cgroup.members() if self._cgroup is not None else []

    def hit_pid_limit(self) -> bool:
        """True once a fork in the box was refused because of the box's ``max_pids``."""
        return self._cgroup is not None and self._cgroup.hit_pid_limit()

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the box; other keywords (stdin, stdout, stderr, pass_fds, ...)
        go to :class:`subprocess.Popen`; the box decides env, cwd and the session."""
        if self._closed:
            raise RuntimeError("the box is closed")
        clash = self._CONTROLLED.intersection(kwargs)
        if clash:
            raise TypeError(f"the box sets {', '.join(sorted(clash))} itself")
        tool, root = self.isolation.tool, os.geteuid() == 0
        cgroup_dirs = [p for _, p in self._cgroup.dirs] if self._cgroup is not None else []
        env = dict(self.spec.env)
        cwd = "/"
        if self._cgroup is not None:
            env[CGROUP_ENV] = self._cgroup.env_value()
        binary = (
            shutil.which("bwrap" if tool == "bubblewrap" else "unshare") if tool != "none" else None
        )
        if tool == "bubblewrap" and binary:
            inner = _bwrap_argv(binary, self.spec, cgroup_dirs, root, argv)
        elif tool == "unshare" and binary:
            inner = _unshare_argv(binary, self.spec, cgroup_dirs, argv)
        elif tool == "none":
            inner, cwd = list(argv), str(self.spec.cwd)
        else:
            raise RuntimeError(f"{tool} is no longer installed")
        joins = [str(p) for p in self._leaf.procs_files()] if self._leaf is not None else []
        full = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _TRAMPOLINE,
            str(os.getpid()),
            *joins,
            "--",
            *inner,
        ]
        proc = cast(
            "subprocess.Popen[bytes]",
            subprocess.Popen(full, env=env, cwd=cwd, start_new_session=True, **kwargs),
        )
        self._procs.append(proc)
        self._started[proc] = _start_time(proc.pid) or "0"  # not reaped yet: still ours
        return proc

    def kill(self) -> None:
        """End every process in the box: by cgroup, by pid namespace (its init dies, the kernel
        kills the rest), and in a "none" box without a cgroup by session; wait until they are
        gone (up to 10 s, then a note)."""
        deadline = time.monotonic() + _KILL_TIMEOUT
        inits: list[tuple[int, str | None]] = []
        if self.isolation.tool != "none":
            for proc in self._procs:
                if proc.returncode is None:
                    inits += [(pid, _start_time(pid)) for pid in _children(proc.pid)]
        if self._cgroup is not None and not self._cgroup.kill_all(_KILL_TIMEOUT):
            self.notes.append("processes were still in the box's cgroup 10 s after kill()")
        for proc in self._procs:
            if proc.returncode is None:  # not reaped: the pid is still our child's
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        while True:
            left = [(pid, started) for pid, started in inits if _alive(pid, started)]
            if self.isolation.tool == "none" and self._cgroup is None:
                left += self._session_members()
            if not left:
                break
            for pid, started in left:
                with contextlib.suppress(OSError):
                    if _alive(pid, started):
                        os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                self.notes.append("processes of the box were still alive 10 s after kill()")
                break
            time.sleep(0.005)

    def _session_members(self) -> list[tuple[int, str | None]]:
        """Live processes in the session of one of our commands, started after it (a "none"
        box without a cgroup has nothing better; a process that called setsid() escapes)."""
        sessions = {str(proc.pid): int(started) for proc, started in self._started.items()}
        found: list[tuple[int, str | None]] = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _proc_stat(int(entry))
                if (
                    stat is not None
                    and stat[0] not in ("Z", "X")
                    and stat[3] in sessions
                    and int(stat[19]) >= sessions[stat[3]]
                ):
                    found.append((int(entry), stat[19]))
        return found

    def close(self) -> None:
        """Kill everything and remove the box's cgroups; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.kill()
        if self._cgroup is not None and self._cleanup is not None and self._cleanup() is False:
            self.notes.append(f"could not remove the cgroup {self._cgroup.main}")
        self._cgroup = self._leaf = self._cleanup = None

    def __enter__(self) -> Box:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- per-test groups


class TestGroup:
    """A child cgroup for one test's processes (made by the supervisor inside the box)."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    def __init__(self, group: _Cgroup, notes: Sequence[str] = ()) -> None:
        self._group = group
        self.notes = list(notes)
        self._removed = False

    @property
    def path(self) -> Path:
        return self._group.main

    @property
    def version(self) -> str:
        return self._group.version

    @classmethod
    def create(cls, name: str, max_pids: int, max_memory: int | None = None) -> TestGroup | None:
        """A new group under ``$PYTEST_KATA_CGROUP``, else where a box would go; None when
        cgroups are unavailable here."""
        value = os.environ.get(CGROUP_ENV)
        parent = _Cgroup.from_env(value) if value else _parent_cgroup()[0]
        if parent is None:
            return None
        try:
            group = parent.unique_child(name)
        except OSError:
            return None
        try:
            notes = group.limit(max_pids, max_memory)
        except OSError:
            group.remove(timeout=1.0)
            return None
        return cls(group, notes)

    def add(self, pid: int) -> None:
        """Move ``pid`` (e.g. the forked test, before it runs learner code) into the group."""
        self._group.add(pid)

    def hit_pid_limit(self) -> bool:
        """True once a fork was refused because of this group's ``pids.max``."""
        return self._group.hit_pid_limit()

    def members(self) -> list[int]:
        return self._group.members()

    def kill_all(self) -> None:
        """SIGKILL every member (freeze first; v2: ``cgroup.kill``) until the group is empty."""
        self._group.kill_all()

    def remove(self) -> None:
        """Kill what is left and remove the group; safe to call twice."""
        if not self._removed:
            self._removed = True
            self._group.remove()
