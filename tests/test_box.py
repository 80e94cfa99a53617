"""The box that walls off a grading run: namespaces, read-only root, hidden paths, loopback only,
nothing left running after close(), a fork storm contained, per-test cgroups that cap a burst
exactly, and the plain fallback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_katas import box
from pytest_katas.box import Box, BoxSpec, Isolation, TestGroup

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

ROOT = os.geteuid() == 0
RUN_TIMEOUT = 30


def _isolation(tool: str) -> Isolation:
    found = box.probe(prefer=tool)
    if found.tool != tool:
        pytest.skip(f"{tool} is not usable here: {'; '.join(found.notes)}")
    return found


@pytest.fixture(params=["bubblewrap", "unshare"])
def tool(request: pytest.FixtureRequest) -> str:
    if not ROOT:
        pytest.skip("the box's namespaces and learner user need root")
    _isolation(request.param)
    return str(request.param)


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    found = {name: tmp_path / name for name in ("ro", "rw", "hidden")}
    for path in found.values():
        path.mkdir()
    (found["ro"] / "data.txt").write_text("read me")
    (found["hidden"] / "solution.py").write_text("SECRET = 42")
    found["rw"].chmod(0o700)  # a root-owned 0700 output dir, as the grader makes it
    return found


MakeBox = Callable[..., Box]


@pytest.fixture
def make_box(dirs: dict[str, Path]) -> Iterator[MakeBox]:
    made: list[Box] = []

    def make(tool: str, *, isolation: Isolation | None = None, **spec: object) -> Box:
        fields: dict[str, object] = {
            "readonly": [dirs["ro"]],
            "writable": [dirs["rw"]],
            "hidden": [dirs["hidden"]],
            "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            "cwd": dirs["rw"],
        }
        fields.update(spec)
        made.append(Box(BoxSpec(**fields), isolation or _isolation(tool)))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for each in made:
        each.close()


def run(inside: Box, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in the box; fail the test if it takes longer than RUN_TIMEOUT."""
    proc = inside.popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def answer(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(found, dict)
    return found


def with_marker(marker: str) -> list[int]:
    """Pids (ours) of every process whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ----------------------------------------------------------------------------- the probe


def test_probe_says_what_it_found() -> None:
    found = box.probe()
    assert found.tool in box.TOOLS
    assert found.cgroup in ("v1", "v2", None)
    assert json.loads(json.dumps(found.to_json()))["tool"] == found.tool
    line = found.describe()
    assert line.startswith(f"{found.tool}: ") and "\n" not in line
    if found.tool == "none":
        assert found.namespaces == () and any("namespaces" in note for note in found.notes)
    else:
        assert set(box.NAMESPACES) <= set(found.namespaces)
    if not ROOT:
        assert found.learner_user is None
    assert box.probe() is found  # cached
    if ROOT and Path("/usr/bin/bwrap").exists():
        assert found.tool == "bubblewrap", found.notes
        assert found.learner_user == "nobody (65534)"
        assert "learner code as nobody" in line


def test_a_box_can_be_forced_down_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(box.FORCE_ENV, "none")
    found = box.probe(refresh=True)
    assert found.tool == "none" and found.namespaces == ()
    assert box.probe(prefer="none") is found
    monkeypatch.setenv(box.FORCE_ENV, "sandcastle")
    assert any("unknown box tool" in note for note in box.probe(refresh=True).notes)


def test_a_failing_bwrap_falls_back_with_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As in an unprivileged container, or under Ubuntu 24.04's AppArmor restriction."""
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed: nope' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    monkeypatch.setattr(box, "_cache", {})
    found = box.probe()
    assert found.tool in ("unshare", "none")
    assert "bubblewrap failed: bwrap: Creating new namespace failed: nope" in found.notes
    if ROOT and shutil.which("unshare"):
        assert found.tool == "unshare", found.notes
        assert found.learner_user == "nobody (65534)"


def test_without_any_tool_the_box_is_plain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(box, "_cache", {})
    found = box.probe()
    assert found.tool == "none"
    assert {"bubblewrap is not installed", "unshare is not installed"} <= set(found.notes)
    assert "no namespaces" in found.describe()


# ----------------------------------------------------------------------------- isolation


def test_processes_outside_are_invisible(tool: str, make_box: MakeBox) -> None:
    found = answer(
        run(
            make_box(tool),
            """
            import json, os, sys
            outside = int(sys.argv[1])
            try:
                os.kill(outside, 0)
                seen = True
            except ProcessLookupError:
                seen = False
            pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
            print(json.dumps({'seen': seen, 'pids': pids, 'me': os.getpid()}))
            """,
            str(os.getpid()),
        )
    )
    assert found["seen"] is False
    assert found["me"] == 2  # pid 1 is the box's reaper
    assert found["pids"] == [1, 2]


def test_the_root_is_read_only_and_the_writable_bind_is_not(
    tool: str, make_box: MakeBox, dirs: dict[str, Path]
) -> None:
    found = answer(
        run(
            make_box(tool),
            """
            import json, sys
            result = {}
            for name, path in (('etc', '/etc/katabox-test'), ('ro', sys.argv[1] + '/new'),
                               ('rw', sys.argv[2] + '/out.txt'), ('tmp', '/tmp/scratch'),
                               ('shm', '/dev/shm/scratch')):
                try:
                    with open(path, 'w') as f:
                        f.write('written inside')
                    result[name] = 'ok'
                except OSError as exc:
                    result[name] = exc.strerror
            result['read'] = open(sys.argv[1] + '/data.txt').read()
            print(json.dumps(result))
            """,
            str(dirs["ro"]),
            str(dirs["rw"]),
        )
    )
    assert found == {
        "etc": "Read-only file system",
        "ro": "Read-only file system",
        "rw": "ok",
        "tmp": "ok",
        "shm": "ok",
        "read": "read me",
    }
    assert (dirs["rw"] / "out.txt").read_text() == "written inside"
    assert not Path("/etc/katabox-test").exists()


def test_a_hidden_path_is_empty_inside(tool: str, make_box: MakeBox, dirs: dict[str, Path]) -> None:
    secret_file = dirs["ro"] / "answers.txt"
    secret_file.write_text("the answers")
    found = answer(
        run(
            make_box(tool, hidden=[dirs["hidden"], secret_file]),
            """
            import json, os, sys
            listing = os.listdir(sys.argv[1])
            try:
                open(sys.argv[1] + '/planted', 'w').close()
                planted = True
            except OSError:
                planted = False
            print(json.dumps({'listing': listing, 'planted': planted,
                              'file': open(sys.argv[2]).read()}))
            """,
            str(dirs["hidden"]),
            str(secret_file),
        )
    )
    assert found == {"listing": [], "planted": False, "file": ""}
    assert (dirs["hidden"] / "solution.py").read_text() == "SECRET = 42"  # untouched outside


def test_only_loopback_works_inside(tool: str, make_box: MakeBox) -> None:
    found = answer(
        run(
            make_box(tool),
            """
            import json, socket
            server = socket.socket()
            server.bind(('127.0.0.1', 0))
            server.listen(1)
            client = socket.create_connection(server.getsockname(), timeout=5)
            peer, _ = server.accept()
            client.sendall(b'ping')
            echoed = peer.recv(4).decode()
            try:
                socket.create_connection(('192.0.2.1', 80), timeout=2)
                outside = 'connected'
            except OSError as exc:
                outside = exc.strerror or type(exc).__name__
            print(json.dumps({'echoed': echoed, 'outside': outside,
                              'hostname': socket.gethostname()}))
            """,
        )
    )
    assert found["echoed"] == "ping"
    assert found["outside"] == "Network is unreachable"
    assert found["hostname"] == "katabox"


GRANDCHILD = """
import os, sys, time
marker, where, then = sys.argv[1], sys.argv[2], sys.argv[3]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', '''
import os, sys, time
with open(sys.argv[2] + '/grandchild.pid.tmp', 'w') as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[2] + '/grandchild.pid.tmp', sys.argv[2] + '/grandchild.pid')
time.sleep(120)
''', marker + '-grandchild', where])
    os._exit(0)
os.wait()
while not os.path.exists(where + '/grandchild.pid'):
    time.sleep(0.01)
print('started', flush=True)
if then == 'stay':
    time.sleep(120)
"""


def _start_grandchild(inside: Box, where: Path, then: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a process that leaves a setsid() double-forked grandchild; return the marker that
    only the grandchild's command line holds."""
    marker = f"katabox-test-{uuid.uuid4().hex}"
    proc = inside.popen(
        [sys.executable, "-c", GRANDCHILD, marker, str(where), then], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    return proc, f"{marker}-grandchild"


def test_a_setsid_double_forked_grandchild_is_gone_after_close(
    tool: str, make_box: MakeBox, dirs: dict[str, Path]
) -> None:
    inside = make_box(tool)
    proc, marker = _start_grandchild(inside, dirs["rw"], "stay")
    [real] = with_marker(marker)
    status = Path(f"/proc/{real}/status").read_text()
    nspids = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
    assert nspids[-1] == (dirs["rw"] / "grandchild.pid").read_text()  # its pid in the box
    assert nspids[0] == str(real) != nspids[-1]
    started = time.monotonic()
    inside.close()
    assert time.monotonic() - started < 5
    assert proc.poll() is not None
    assert with_marker(marker) == []
    assert inside.members() == []
    inside.close()  # idempotent


def test_everything_dies_with_the_first_process(
    tool: str, make_box: MakeBox, dirs: dict[str, Path]
) -> None:
    proc, marker = _start_grandchild(make_box(tool), dirs["rw"], "leave")
    assert proc.wait(timeout=RUN_TIMEOUT) == 0
    assert wait_until(lambda: with_marker(marker) == []), "the grandchild outlived the box"


STORM = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


def test_a_fork_storm_is_contained_and_killed_quickly(tool: str, make_box: MakeBox) -> None:
    inside = make_box(tool, max_pids=24)
    if inside.isolation.cgroup is None:
        pytest.skip("no cgroup here to cap the number of processes")
    marker = f"katabox-storm-{uuid.uuid4().hex}"
    proc = inside.popen([sys.executable, "-c", STORM, marker])
    assert wait_until(inside.hit_pid_limit), "the storm never reached the limit"
    assert len(inside.members()) <= 24
    started = time.monotonic()
    inside.close()
    assert time.monotonic() - started < 5
    assert proc.poll() is not None
    assert with_marker(marker) == []


def test_the_box_memory_is_capped(tool: str, make_box: MakeBox) -> None:
    inside = make_box(tool, max_memory=64 << 20)
    if inside.isolation.cgroup is None or any("memory" in note for note in inside.notes):
        pytest.skip("no memory cgroup here")
    done = run(
        inside,
        """
        try:
            block = b'x' * (256 << 20)
            print('allocated', len(block))
        except MemoryError:
            print('MemoryError')
        """,
    )
    assert "allocated" not in done.stdout
    assert done.stdout == "MemoryError\n" or done.returncode != 0  # or the OOM killer's SIGKILL


def test_the_capabilities_let_root_police_nobody(
    tool: str, make_box: MakeBox, dirs: dict[str, Path]
) -> None:
    """Root in the box drops a forked child to nobody, reads what nobody wrote, kills nobody's
    process and removes its files; nobody has no capabilities; root has no CAP_SYS_ADMIN."""
    found = answer(
        run(
            make_box(tool),
            """
            import json, os, shutil, signal, socket, sys, time, traceback
            out = sys.argv[1]  # root-owned, 0700
            def caps():
                with open('/proc/self/status') as f:
                    return next(l.split()[1] for l in f if l.startswith('CapEff'))
            result = {'caps': caps()}
            run = '/tmp/run'  # root-owned, sticky, like the grader's run directories
            os.mkdir(run)
            os.chmod(run, 0o1777)
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    with open(os.path.join(run, 'secret'), 'w') as f:
                        f.write('mine')
                    os.chmod(os.path.join(run, 'secret'), 0o600)
                    os.mkdir(os.path.join(run, 'sub'), 0o700)
                    open(os.path.join(run, 'sub', 'deep'), 'w').close()
                    denied = 0
                    for attempt in (lambda: open(os.path.join(out, 'x'), 'w'),
                                    lambda: open('/etc/katabox-x', 'w'),
                                    lambda: os.kill(os.getppid(), 0)):
                        try:
                            attempt()
                        except OSError:
                            denied += 1
                    os.write(ready_w, json.dumps([caps(), denied]).encode())
                    time.sleep(60)
                except BaseException:
                    traceback.print_exc()
                os._exit(1)
            os.close(ready_w)
            result['nobody_caps'], result['nobody_denied'] = json.loads(os.read(ready_r, 200))
            with open('/proc/%d/status' % pid) as f:
                result['uid'] = f.read().split('Uid:')[1].split()[0]
            result['fds'] = len(os.listdir('/proc/%d/fd' % pid)) > 0  # CAP_SYS_PTRACE
            with open(os.path.join(run, 'secret')) as f:
                result['read'] = f.read()  # CAP_DAC_OVERRIDE
            os.kill(pid, signal.SIGKILL)  # CAP_KILL
            result['killed'] = os.waitpid(pid, 0)[1] == signal.SIGKILL
            shutil.rmtree(run)  # into nobody's 0700 directory: CAP_DAC_OVERRIDE
            result['removed'] = not os.path.exists(run)
            try:
                socket.sethostname('escaped')  # CAP_SYS_ADMIN: not ours
                result['sysadmin'] = True
            except PermissionError:
                result['sysadmin'] = False
            print(json.dumps(result))
            """,
            str(dirs["rw"]),
        )
    )
    assert int(str(found["caps"]), 16) == sum(1 << n for n in box.BOX_CAPABILITIES.values())
    assert found["nobody_caps"] == "0000000000000000"
    assert found["nobody_denied"] == 3
    assert found["uid"] == "65534"
    assert found["fds"] and found["read"] == "mine" and found["killed"] and found["removed"]
    assert found["sysadmin"] is False


def test_popen_keeps_the_environment_and_the_session_to_itself(make_box: MakeBox) -> None:
    inside = make_box("none", isolation=box.probe(prefer="none"))
    with pytest.raises(TypeError, match="env"):
        inside.popen(["true"], env={})
    done = run(inside, "import os; print(os.environ.get('HOME'), os.getsid(0) == os.getpid())")
    assert done.stdout.split() == ["None", "True"]  # nothing inherited; a session of its own


def test_a_missing_path_is_a_note_not_a_crash(tool: str, make_box: MakeBox, tmp_path: Path) -> None:
    inside = make_box(tool, readonly=[tmp_path / "nowhere"], hidden=[tmp_path / "nothing"])
    assert any("nowhere" in note for note in inside.notes)
    assert run(inside, "print('fine')").stdout == "fine\n"


# ----------------------------------------------------------------------------- per-test groups


BURST = """
import json, os, sys, time
from pytest_katas.box import TestGroup
group = TestGroup.create('test-1', max_pids=5)
if group is None:
    print(json.dumps({'group': None}))
    sys.exit(0)
report_r, report_w = os.pipe()
gate_r, gate_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.read(gate_r, 1)  # moved into the group
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    forked = 0
    for _ in range(20):
        try:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            forked += 1
        except OSError:
            pass
    os.write(report_w, str(forked).encode())
    time.sleep(60)
    os._exit(0)
group.add(pid)
os.write(gate_w, b'x')
forked = int(os.read(report_r, 20))
result = {'group': str(group.path), 'forked': forked, 'hit': group.hit_pid_limit(),
          'members': len(group.members())}
started = time.monotonic()
group.kill_all()
result['seconds'] = time.monotonic() - started
result['after'] = group.members()
os.waitpid(pid, 0)
group.remove()
result['removed'] = not group.path.exists()
print(json.dumps(result))
"""


def test_a_test_group_caps_a_burst_exactly_inside_the_box(tool: str, make_box: MakeBox) -> None:
    inside = make_box(tool)
    if inside.cgroup_env is None:
        pytest.skip("no cgroup here")
    found = answer(run(inside, BURST))
    assert found["group"] is not None
    assert str(found["group"]).endswith("/test-1")
    assert found["forked"] == 4  # the test process itself is the fifth
    assert found["hit"] is True
    assert found["members"] == 5
    assert found["after"] == []
    assert float(str(found["seconds"])) < 2
    assert found["removed"] is True


def test_a_test_group_outside_a_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(box.CGROUP_ENV, raising=False)
    group = TestGroup.create(f"katatest-{os.getpid()}", max_pids=3)
    if group is None:
        pytest.skip("no writable cgroup here")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import os, time\nos.setsid()\ntime.sleep(60)"]
        )
        group.add(proc.pid)
        assert group.members() == [proc.pid]
        assert not group.hit_pid_limit()
        group.kill_all()
        assert proc.wait(timeout=5) == -signal.SIGKILL
        assert group.members() == []
    finally:
        group.remove()
    assert not group.path.exists()
    group.remove()  # idempotent


def test_the_cgroup_variable_names_the_same_directories(tmp_path: Path) -> None:
    for name in ("pids", "memory", "freezer"):
        (tmp_path / name / "katabox-1").mkdir(parents=True)
    v1 = box._Cgroup("v1", tuple((n, tmp_path / n / "katabox-1") for n in ("pids", "freezer")))
    assert box._Cgroup.from_env(v1.env_value()) == v1
    v2 = box._Cgroup("v2", (("", tmp_path / "pids" / "katabox-1"),))
    assert v2.env_value() == f"v2:{tmp_path}/pids/katabox-1"
    assert box._Cgroup.from_env(v2.env_value()) == v2
    assert box._Cgroup.from_env("v1:memory=" + str(tmp_path / "memory" / "katabox-1")) is None
    assert box._Cgroup.from_env("v3:/sys") is None


def test_no_test_group_without_a_cgroup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(box.CGROUP_ENV, f"v2:{tmp_path / 'gone'}")
    assert TestGroup.create("test-1", max_pids=5) is None


# ----------------------------------------------------------------------------- the fallback


def test_the_none_fallback_runs_plainly_and_still_kills(
    make_box: MakeBox, dirs: dict[str, Path]
) -> None:
    isolation = box.probe(prefer="none")
    assert isolation.tool == "none"
    inside = make_box("none", isolation=isolation)
    done = run(
        inside,
        "import os, sys\nos.kill(int(sys.argv[1]), 0)\nprint('visible')",
        str(os.getpid()),
    )
    assert done.stdout == "visible\n"  # no pid namespace
    if isolation.cgroup is None:
        pytest.skip("no cgroup: a setsid() process can outlive a 'none' box")
    proc, marker = _start_grandchild(inside, dirs["rw"], "stay")
    assert with_marker(marker)
    inside.close()
    assert proc.poll() is not None
    assert with_marker(marker) == []


def test_a_none_box_without_a_cgroup_kills_its_session(
    make_box: MakeBox, dirs: dict[str, Path]
) -> None:
    bare = Isolation("none", (), None, None, ("forced bare for the test",))
    inside = make_box("none", isolation=bare)
    marker = f"katabox-test-{uuid.uuid4().hex}"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        "sys.argv[1]])\n"
        "    os._exit(0)\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = inside.popen([sys.executable, "-c", code, marker], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
    assert wait_until(lambda: bool(with_marker(marker)))
    inside.close()
    assert proc.poll() is not None
    assert with_marker(marker) == []
