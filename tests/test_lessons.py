"""What a learner reads before any test passes: the lessons' sample failures, which must be
what the tests really print, and the one line a pytest without the plugin prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from conftest import KATAS, ROOT, run_command, run_kata

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

RUN_TIMEOUT = 240

# A sample is the fenced block right after `<!-- sample: MUTANT::TEST -->` in a lesson.
_SAMPLE = re.compile(
    r"<!-- sample: (?P<mutant>\S+)::(?P<test>\w+) -->\s*```\n(?P<text>.*?)```", re.S
)


_CLASS = re.compile(
    r"^(TODO|BROKEN|WRONG|ORDER|CONTRACT|LOST|RACE|HANG|SLOW|CRASH|LEAK|CAP): ", re.M
)


def _lessons() -> list[Path]:
    return sorted([*KATAS.glob("*/README.md"), *KATAS.glob("*/README.zh-CN.md")])


def _lang(lesson: Path) -> str:
    """The locale a lesson's samples are printed in: the lesson's own language."""
    return "zh_CN.UTF-8" if lesson.name == "README.zh-CN.md" else "C"


def lesson_samples() -> list[tuple[str, str, str, str, str]]:
    """``(lesson, mutant, test, text, lang)`` for every sample marked in a lesson."""
    found = []
    for lesson in _lessons():
        for match in _SAMPLE.finditer(lesson.read_text(encoding="utf-8")):
            name = str(lesson.relative_to(ROOT))
            found.append((name, match["mutant"], match["test"], match["text"], _lang(lesson)))
    return found


def _normal(text: str, mutant: str, kata: str) -> str:
    """The text with whitespace collapsed (lessons wrap lines that the terminal does not), the
    mutant's path spelled as the learner's, and what differs from run to run masked: pids,
    seeds, process numbers, how many workers a timing-dependent list caught, whether the
    race happened in this run, the deadlock detector's calibrated wait."""
    text = " ".join(text.replace(mutant, f"katas/{kata}/{kata}.py").split())
    for pattern, mask in (
        (r"pid \d+", "pid N"),
        (r"--kata-seed=\d+", "--kata-seed=N"),
        (r"--kata-target=\S+", "--kata-target=T"),
        (r"Process-\d+", "Process-N"),
        (r"Process-N \(pid N\)(, Process-N \(pid N\))*", "Process-N (pid N)..."),
        (r"\d+ worker\(s\)", "N worker(s)"),
        (r" \(it happened in this run\)", ""),
        # A server that closes a socket it has not read to the end: whether the client sees
        # the close or a reset depends on what had arrived by then.
        (r"then (the server closed the connection|the connection was reset)", "then it ended"),
        (r"\(\d+(\.\d+)? s after the last one stopped\)", "(N s after the last one stopped)"),
        (r"最后一个停下后 \d+(\.\d+)? 秒", "最后一个停下后 N 秒"),
        (r"(?<!\S)(\S*python\S* -m |\S*/)pytest ", "pytest "),
    ):
        text = re.sub(pattern, mask, text)
    return text


_STACK = ("Where (innermost last):", "出错位置")
# A number, but not a time in seconds, nor a line of the learner's file (a lesson that
# points at the wrong line misleads; a mutant edited without regenerating its samples must
# fail here).
_COUNT = re.compile(r"(?<!line )(?<!\.py:)(?<!第 )\b\d+\b(?!(\.\d+)? s\b)")


def _pieces(sample: str) -> list[str]:
    """The sample's paragraphs, each of which must appear in the real output, in order. Only
    their prose is compared: indented lines (interleaving tables, stacks, lists of threads)
    depend on how the OS ran the threads that time. A line `...` marks a cut."""
    pieces = []
    for paragraph in re.split(r"\n\s*\n|\n\.\.\.\n", sample):
        prose = [line for line in paragraph.splitlines() if line and not line[0].isspace()]
        if prose and not prose[0].startswith("In this run the two did not overlap"):
            pieces.append("\n".join(prose))
    return pieces


def _sample_run(
    kata: str, mutant: str, test: str, lang: str = "C"
) -> subprocess.CompletedProcess[str]:
    """The run a sample comes from: one test, on the mutant, with a fixed seed."""
    return _run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"katas/{kata}/test_{kata}.py::{test}",
            f"--kata-target={mutant}",
            "--kata-seed=1",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
        ],
        _clean_env() | {"LANG": lang, "LC_ALL": lang},
    )


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    returncode, out = run_command(args, env, RUN_TIMEOUT)
    return subprocess.CompletedProcess(args, returncode, out, "")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LC_"))}
    return env | {"LANG": "C"}


SAMPLES = lesson_samples()


def test_every_failure_a_lesson_shows_is_a_sample_of_a_real_run():
    for lesson in _lessons():
        text = lesson.read_text(encoding="utf-8")
        fences = re.findall(r"(.*)\n```\n(.*?)```", text, re.S)
        unmarked = [b for head, b in fences if _CLASS.search(b) and "<!-- sample: " not in head]
        assert not unmarked, f"{lesson}: a failure shown with no `<!-- sample: MUTANT::TEST -->`"
    assert len(SAMPLES) >= 30
    for sample in SAMPLES:
        mutant = sample[1]
        assert (ROOT / mutant).is_file(), f"a lesson's sample names {mutant}, which is not there"


@pytest.mark.mutants
@pytest.mark.parametrize(
    "lesson,mutant,test,text,lang",
    SAMPLES,
    ids=[f"{Path(s[0]).parent.name}/{Path(s[0]).stem}/{Path(s[1]).stem}" for s in SAMPLES],
)
def test_a_lessons_sample_failure_is_what_the_test_prints(lesson, mutant, test, text, lang):
    kata = Path(lesson).parent.name
    run = _sample_run(kata, mutant, test, lang)
    assert run.returncode == 1, run.stdout[-3000:]
    seen = _normal(run.stdout, mutant, kata)
    pieces = _pieces(text)
    # From the stack of the test on, what children did after it failed depends on timing
    # (a worker still running when its Manager went away): compared are the failure itself,
    # the plugin's explanation, and the replay command.
    cut = next((i for i, p in enumerate(pieces) if p.startswith(_STACK)), len(pieces))
    at = 0
    for n, piece in enumerate([*pieces[:cut], *pieces[cut:][-1:]]):
        want = _normal(piece, mutant, kata)
        if n == 0:  # the headline: its counts may vary with timing, its words and times not
            found = _COUNT.sub("N", seen).find(_COUNT.sub("N", want))
        else:
            found = seen.find(want, at)
        assert found >= 0, (
            f"{lesson} shows a failure the test no longer prints: regenerate "
            "the lessons' samples with `python tests/test_lessons.py` and review the diff.\n"
            f"Missing (in this order):\n{piece}\n\nThe run printed:\n{run.stdout[-4000:]}"
        )
        at = 0 if n == 0 else found + len(want)  # (masking moved the headline's place)


def test_a_pytest_without_the_plugin_says_in_one_line_how_to_run_the_katas():
    # A pytest that cannot import the plugin: the kata folder's conftest.py answers first.
    code = (
        "import sys; sys.modules['pytest_katas'] = None; import pytest; "
        "sys.exit(pytest.main(sys.argv[1:]))"
    )
    run = _run(
        [sys.executable, "-c", code, "katas/pipe", "--kata-hint=1"],
        _clean_env() | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},  # as if it were not installed
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 4, run.stdout
    assert len(lines) == 1, run.stdout
    assert "does not have the katas plugin" in lines[0]
    assert "Traceback" not in run.stdout and "unrecognized arguments" not in run.stdout
    assert ".venv/bin/pytest katas/pipe --kata-hint=1" in lines[0] or "pip install" in lines[0]


def test_the_same_run_with_the_plugin_is_not_stopped():  # the check's correct case
    run = _run(
        [sys.executable, "-m", "pytest", "katas/pipe", "--co", "-q", "-p", "no:cacheprovider"],
        _clean_env(),
    )
    assert run.returncode == 0, run.stdout
    assert "does not have the katas plugin" not in run.stdout


def test_a_stuck_stop_shows_where_each_server_thread_waits():
    # stop() joins the accept thread while that thread serves an idle client itself: the
    # failure must show both lines, not guess at a cause the code did not have.
    mutant = "tests/mutants/echo_server/joins_the_serving_accept_thread.py"
    test = "test_stop_returns_within_two_seconds_while_clients_sit_idle"
    run = _sample_run("echo_server", mutant, test)
    assert run.returncode == 1, run.stdout[-3000:]
    assert "HANG: stop() had not returned" in run.stdout
    source = (ROOT / mutant).read_text(encoding="utf-8").splitlines()

    def line(text: str) -> int:
        return next(n for n, code in enumerate(source, 1) if text in code)

    joins, waits = line("self._accepter.join()"), line("data = conn.recv(_CHUNK)")
    serves = line("self._serve(conn)")
    assert f"stop() waits in join() for 'echo-accept' at line {joins}" in run.stdout, run.stdout
    assert f"'echo-accept' waits at line {waits} (`data = conn.recv(_CHUNK)`)" in run.stdout
    assert f"reached from _accept_loop (line {serves})" in run.stdout
    assert "is joining 'echo-accept' while that thread is still in recv()" in run.stdout


def test_a_sentinel_compared_with_is_is_named_in_the_hang():
    # Consumers that test `item is _END` never stop: the hang says what the trace saw.
    mutant = "tests/mutants/pipe/sentinel_checked_with_is.py"
    run = _sample_run("pipe", mutant, "test_fan_out_delivers_every_item_exactly_once")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "HANG: " in run.stdout
    assert "object(s) of type object on that pipe" in run.stdout, run.stdout[-3000:]
    assert "`item is SENTINEL` is never true; check with isinstance() instead" in run.stdout


def test_a_hang_with_no_sentinel_in_sight_does_not_mention_one():
    mutant = "tests/mutants/pipe/end_left_open.py"
    run = _sample_run("pipe", mutant, "test_relay_returns_every_item_in_order")
    assert "HANG: " in run.stdout, run.stdout[-3000:]
    assert "SENTINEL" not in run.stdout


def _sample_text(output: str, kind: str, kata: str, mutant: str) -> str:
    """The failure as a lesson shows it: from the test's name and its headline to its replay
    line, in the learner's paths, prose wrapped to the lesson's width (tables, commands and
    Chinese left as they are)."""
    lines = output.replace(mutant, f"katas/{kata}/{kata}.py").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{kind}: "))
    if start > 0 and lines[start - 1].startswith("____"):  # the test's name, as pytest shows it
        start -= 1
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("=====", "____"))),
        len(lines),
    )
    shown: list[str] = []
    for line in lines[start:end]:
        line = re.sub(r"--kata-target=\S+", "--kata-target=katas", line)
        line = re.sub(r"(?<!\S)(\S*python\S* -m |\S*/)pytest ", "pytest ", line)
        keep = line.startswith((" ", "____")) or "pytest katas/" in line
        if keep or len(line) <= 92 or any(ord(c) >= 0x2E80 for c in line):
            shown.append(line)
        else:
            shown.extend(textwrap.wrap(line, 92, break_on_hyphens=False))
    return "\n".join(shown).rstrip() + "\n"


def write_samples(only: Sequence[str] = ()) -> None:
    """Rerun every lesson's sample (or those of the katas named in ``only``) and write what
    the test prints now into the lesson."""
    for lesson in _lessons():
        text = lesson.read_text(encoding="utf-8")
        kata, lang = lesson.parent.name, _lang(lesson)
        if only and kata not in only:
            continue

        def fresh(match: re.Match[str], kata: str = kata, lang: str = lang) -> str:
            found = _CLASS.search(match["text"])
            assert found is not None, match["text"]
            kind, mutant, test = found[1], match["mutant"], match["test"]
            body = _sample_text(_sample_run(kata, mutant, test, lang).stdout, kind, kata, mutant)
            # What a second and a third run do not print again depends on timing: cut it.
            again = [_normal(_sample_run(kata, mutant, test, lang).stdout, mutant, kata)]
            again.append(_normal(_sample_run(kata, mutant, test, lang).stdout, mutant, kata))
            kept: list[str] = []
            for n, paragraph in enumerate(body.rstrip().split("\n\n")):
                prose = _pieces(paragraph)
                if n == 0 or all(_normal(p, mutant, kata) in seen for p in prose for seen in again):
                    kept.append(paragraph)
                elif kept and kept[-1] != "...":
                    kept.append("...")
            body = "\n\n".join(kept).replace("\n\n...\n\n", "\n...\n") + "\n"
            return f"<!-- sample: {match['mutant']}::{match['test']} -->\n```\n{body}```"

        lesson.write_text(_SAMPLE.sub(fresh, text), encoding="utf-8")
        print(f"rewrote the samples of {lesson.relative_to(ROOT)}")


if __name__ == "__main__":  # python tests/test_lessons.py [KATA ...]
    write_samples(sys.argv[1:])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_still_at_work_is_not_blamed_for_writes_it_has_not_made_yet(method, tmp_path):
    # no_join returns, and shuts its Manager down, before its worker has written: under
    # spawn it has not even started yet; under fork it starts, finds no Manager and
    # crashes. The test that checks how each worker wrote must not say it never did (that
    # it was not joined is a LEAK, and the crash is shown).
    mutant = ROOT / "tests" / "mutants" / "manager" / "no_join.py"
    run = run_kata("manager", str(mutant), tmp_path, "-k", "each_subtract", method=method)
    assert run.cases, run.explain()
    assert not [c for c in run.failed() if c.kind == "contract"], run.explain()


@pytest.mark.one_python
def test_a_worker_that_needs_a_global_its_parent_set_fails_under_spawn_only(tmp_path):
    # Most pool tests start their pools with fork whatever the start method chosen
    # (@any_start_method); the ones left under the chosen method still catch what only
    # spawn and forkserver break: a worker reading a global the parent set at run time.
    solution = (ROOT / "solutions" / "pool" / "pool.py").read_text(encoding="utf-8")
    code = solution.replace(
        "    return number * number\n", "    return number**_POWER\n\n\n_POWER = None\n"
    ).replace(
        "    with multiprocessing.Pool(processes) as pool:\n        squared",
        "    global _POWER\n    _POWER = 2\n"
        "    with multiprocessing.Pool(processes) as pool:\n        squared",
    )
    assert code.count("_POWER") == 4, "solutions/pool/pool.py changed: update this test's edit"
    learner = tmp_path / "pool.py"
    learner.write_text(code, encoding="utf-8")
    forked = run_kata("pool", str(learner), tmp_path / "fork", "-k", "squares", method="fork")
    assert forked.cases and not forked.failed(), forked.explain()
    spawned = run_kata("pool", str(learner), tmp_path / "spawn", "-k", "squares", method="spawn")
    failed = {c.name: c.kind for c in spawned.failed()}
    assert failed == {"test_squares_returns_each_square_in_input_order": "crash"}, spawned.explain()
