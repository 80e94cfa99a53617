"""``katas grade``: the grader's regression suite. Every attack in tests/attacks/ is graded
as a submission: it must end by itself, write a report, exit non-zero, score no more than
the same submission without the trick (the stubs score 0), and leave no process behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from conftest import KATAS, ROOT
from pytest_katas import box, waits
from pytest_katas.catalog import list_katas

pytestmark = pytest.mark.grader

ATTACKS = Path(__file__).resolve().parent / "attacks"


def _mark(attack: str) -> str:
    """What an attack's processes carry in their name or command line, to be found by."""
    return f"KA-{attack}"[:15]  # a process name holds 15 characters


GRADE_TIMEOUT = 600

ISOLATION = box.probe()
boxed = pytest.mark.skipif(
    ISOLATION.tool == "none" or ISOLATION.learner_user is None,
    reason=f"this host cannot box learner code ({ISOLATION.describe()})",
)


def _survivors(attack: str) -> list[psutil.Process]:
    mark = _mark(attack)
    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        with_mark = mark in " ".join(proc.info["cmdline"] or ()) or proc.info["name"] == mark
        if with_mark:
            found.append(proc)
    return found


def grade(
    tmp_path: Path, *submissions: Path, args: tuple[str, ...] = (), fmt: str = "exercism"
) -> tuple[int, dict, str, float]:
    report = tmp_path / ("reports" if len(submissions) > 1 else "report.json")
    command = [
        sys.executable,
        "-m",
        "pytest_katas.cli",
        "grade",
        *map(str, submissions),
        "--checkout",
        str(ROOT),
        "--report",
        str(report),
        "--format",
        fmt,
        "--seed",
        "1",
        *args,
    ]
    started = time.monotonic()
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=GRADE_TIMEOUT, cwd=tmp_path
    )
    seconds = time.monotonic() - started
    if len(submissions) > 1:
        data = {p.stem: json.loads(p.read_text()) for p in report.glob("*.json")}
    elif fmt == "junit":
        data = {"xml": report.read_text()}
    else:
        data = json.loads(report.read_text())
    return run.returncode, data, run.stdout + run.stderr, seconds


def _submission(tmp_path: Path, files: dict[str, Path]) -> Path:
    """A submission folder holding ``files`` as katas/<kata>/<kata>.py."""
    folder = tmp_path / "submission"
    for kata, source in files.items():
        target = folder / "katas" / kata / f"{kata}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    folder.mkdir(exist_ok=True)
    return folder


# -- attacks ---------------------------------------------------------------------------------

ATTACK_KATAS = {
    path.name: sorted(p.name for p in (path / "katas").iterdir())
    for path in sorted(ATTACKS.iterdir())
    if path.is_dir()
}


@pytest.mark.slow
@boxed
@pytest.mark.parametrize("attack", sorted(ATTACK_KATAS))
def test_an_attack_scores_nothing_and_leaves_nothing(attack, tmp_path):
    katas = ATTACK_KATAS[attack]
    only = [arg for kata in katas for arg in ("--kata", kata)]
    code, report, output, seconds = grade(tmp_path, ATTACKS / attack, args=tuple(only))
    assert code == 1, f"{attack}: katas grade exited {code}, not 1\n{output[-3000:]}"
    assert report["status"] in ("fail", "error"), output[-3000:]
    assert report["score"] == 0, (
        f"{attack} scored {report['score']}: the stubs score 0\n{json.dumps(report)[:3000]}"
    )
    assert all(t["score"] == 0 for t in report["tests"]), "a test's share was counted"
    deadline = sum(
        (k.timeout or 10) * sum(len(t.tests) for t in k.tasks)
        for k in list_katas(KATAS)
        if k.name in katas
    )
    # Each test may take up to STRETCH_MAX times its deadline on a busy machine.
    assert seconds < deadline * waits.STRETCH_MAX * 1.5 + 60, f"{attack} took {seconds:.0f} s"
    time.sleep(0.2)
    left = _survivors(attack)
    for proc in left:  # ours: started by this attack; end them so nothing else is hurt
        proc.kill()
    assert not left, f"{attack} left {len(left)} process(es) running after katas grade"


@pytest.mark.slow
@boxed
def test_a_forged_result_is_replaced_by_the_test_process_own(tmp_path):
    # The pipe kata's test body runs apart: the learner process writes its forged result
    # and leaves, the test process sees it leave and writes the honest verdict over it.
    code, report, output, _ = grade(tmp_path, ATTACKS / "forged_result", args=("--kata", "pipe"))
    classes = {t["failure_class"] for t in report["tests"]}
    assert classes == {"crash"}, output[-3000:]
    said = report["tests"][0]["message"]
    assert "the process that runs your code ended (exited with code 0)" in said, said


@pytest.mark.slow
@boxed
def test_an_oracle_changed_from_learner_code_is_called_tampered(tmp_path):
    # The threads kata's harness runs beside the learner's objects: what it can check of
    # itself after the test, it does.
    code, report, output, _ = grade(
        tmp_path, ATTACKS / "unhook_threads", args=("--kata", "threads")
    )
    tampered = [t for t in report["tests"] if t["failure_class"] == "tampered"]
    assert tampered, output[-3000:]
    said = tampered[0]["message"]
    assert any(word in said for word in ("replaced", "switched off", "was removed")), said


@pytest.mark.slow
@boxed
@pytest.mark.parametrize("attack", ["replace_test_helper", "swap_classifier", "trace_off"])
def test_an_oracle_that_runs_apart_is_out_of_the_learners_reach(attack, tmp_path):
    # Each attack changes the test or the plugin from learner code, then hands in a relay()
    # with no child and no pipe. The test body runs in another process: the changes reach
    # only the learner process's own copies, and the relay fails as it deserves.
    code, report, output, _ = grade(tmp_path, ATTACKS / attack, args=("--kata", "pipe"))
    by_test = {t["test"]: t for t in report["tests"]}
    assert not [t for t in report["tests"] if t["failure_class"] == "tampered"], output[-3000:]
    child = by_test["test_relay_uses_exactly_one_child_process"]
    assert child["status"] == "fail" and child["failure_class"] == "wrong", child


@pytest.mark.slow
@boxed
def test_the_echo_server_tests_run_apart_out_of_the_learners_reach(tmp_path):
    # The attack silences the test module's checks in the learner process, then hands in a
    # server that never listens: the clients, on the test's side, find nobody there.
    code, report, output, _ = grade(
        tmp_path, ATTACKS / "echo_helpers", args=("--kata", "echo_server")
    )
    assert not [t for t in report["tests"] if t["failure_class"] == "tampered"], output[-3000:]
    by_test = {t["test"]: t for t in report["tests"]}
    echo = by_test["test_a_client_gets_back_exactly_what_it_sent"]
    assert echo["status"] == "fail" and echo["failure_class"] == "crash", echo
    assert "ConnectionRefusedError" in echo["message"], echo


@pytest.mark.slow
@boxed
def test_an_answer_equal_to_anything_is_wrong(tmp_path):
    code, report, output, _ = grade(tmp_path, ATTACKS / "always_equal", args=("--kata", "manager"))
    wrong = [t for t in report["tests"] if "subclass of int" in (t["message"] or "")]
    assert wrong, output[-3000:]


def test_the_submissions_own_configuration_is_never_read(tmp_path):
    """Its conftest.py, pytest.ini, tox.ini, kata.toml and test file are all ignored."""
    code, report, output, _ = grade(tmp_path, ATTACKS / "own_config", args=("--kata", "pipe"))
    assert code == 1 and report["score"] == 0, output[-3000:]
    names = {t["test"] for t in report["tests"]}
    assert "test_nothing" not in names and len(names) > 10, names
    assert {t["failure_class"] for t in report["tests"]} == {"todo"}


# -- what a class gets -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_stubs_score_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, report, output, _ = grade(tmp_path, empty)
    assert code == 1, output[-3000:]
    assert report["score"] == 0 and report["max_score"] == 50, report
    assert set(report["katas"]) == {k.name for k in list_katas(KATAS)}
    assert report["notes"] and "graded as the stub" in report["notes"][0]
    assert report["isolation"]["tool"] == ISOLATION.tool


@pytest.mark.slow
def test_the_solutions_score_full_marks(tmp_path):
    code, report, output, _ = grade(tmp_path, ROOT / "solutions")
    assert code == 0, output[-5000:]
    assert report["status"] == "pass" and report["score"] == report["max_score"] == 50


@pytest.mark.slow
def test_ten_copies_at_once_grade_as_one_alone(tmp_path):
    solution = _submission(tmp_path, {"pipe": ROOT / "solutions" / "pipe" / "pipe.py"})
    copies = []
    for n in range(10):
        copy = tmp_path / "class" / f"student{n:02}"
        shutil.copytree(solution, copy)
        copies.append(copy)
    (tmp_path / "alone").mkdir()
    _, alone, _, _ = grade(tmp_path / "alone", solution, args=("--kata", "pipe"))
    code, many, output, _ = grade(tmp_path, *copies, args=("--kata", "pipe", "-n", "2"))
    assert code == 0, output[-3000:]

    def verdict(report: dict) -> tuple:
        tests = sorted((t["name"], t["status"], t["score"]) for t in report["tests"])
        return report["status"], report["score"], tests

    assert set(many) == {f"student{n:02}" for n in range(10)} | {"index"}
    for name, report in many.items():
        if name != "index":
            assert verdict(report) == verdict(alone), name


def test_a_report_is_there_from_the_start_and_says_error(tmp_path):
    """Killed before it finishes, katas grade leaves a report that scores nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    report = tmp_path / "report.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_katas.cli", "grade", str(empty), "--checkout", str(ROOT)]
        + ["--report", str(report)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        data = json.loads(report.read_text())
        assert data["status"] == "error" and data["score"] == 0
    finally:
        os.killpg(process.pid, 9)
        process.wait()


@pytest.mark.parametrize("fmt", ["classroom", "junit"])
def test_every_format_carries_the_checked_score(fmt, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, data, output, _ = grade(tmp_path, empty, args=("--kata", "pipe"), fmt=fmt)
    assert code == 1, output[-3000:]
    if fmt == "classroom":
        assert data["max_score"] == 10 and sum(t["score"] for t in data["tests"]) == 0
        assert {t["status"] for t in data["tests"]} == {"fail"}
    else:
        assert '<property name="score" value="0"' in data["xml"]
        assert "<failure" in data["xml"]


def test_a_usage_mistake_is_explained(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "pytest_katas.cli", "grade", str(tmp_path), "--checkout"]
        + [str(ROOT), "--report", str(tmp_path / "r.json"), "--kata", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "there is no kata nosuch" in run.stderr and "pipe" in run.stderr


# -- a class in GitHub Actions ---------------------------------------------------------------

CLASS_WORKFLOW = ROOT / ".github" / "workflows" / "regrade-class.yml"


def _heredocs(workflow: Path) -> list[str]:
    """The Python scripts a workflow runs (``python3 - <<'EOF' ... EOF``), dedented."""
    text = workflow.read_text()
    found = re.findall(r"python3 - <<'EOF'[^\n]*\n(.*?)\n\s*EOF\n", text, re.S)
    return [textwrap.dedent(script) for script in found]


def _script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-"],
        input=script,
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_class_workflow_grades_each_repository_once_in_a_job_of_its_own(tmp_path):
    listing, table = _heredocs(CLASS_WORKFLOW)
    run = _script(listing, {"REPOSITORIES": "ann/katas\nbo/katas  ann/katas\n"}, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == 'repositories=["ann/katas", "bo/katas"]'
    for bad in ("", "ann", "ann/katas; rm -rf /"):
        assert _script(listing, {"REPOSITORIES": bad}, tmp_path).returncode != 0, bad
    text = CLASS_WORKFLOW.read_text()
    assert "repository: ${{ fromJSON(needs.class.outputs.repositories) }}" in text
    assert "katas grade submission --checkout grader" in text and "|| true" not in text
    assert 'test -s "report-$name.json" || exit 1' in text and "exit $code" in text


def test_the_class_workflow_tables_every_report_it_was_given(tmp_path):
    _, table = _heredocs(CLASS_WORKFLOW)
    for student, status, score in (("ann-katas", "pass", 50), ("bo-katas", "fail", 12)):
        report = {"status": status, "score": score, "max_score": 50}
        (tmp_path / f"report-{student}.json").write_text(json.dumps(report))
    run = _script(table, {}, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[2:] == [
        "| ann-katas | pass | 50/50 |",
        "| bo-katas | fail | 12/50 |",
    ]
