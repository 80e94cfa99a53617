"""Messages in two languages: choosing one, the board and failures in Chinese, the catalog
complete (every msgid of the code and every kata.toml text translated) and compiled."""

from __future__ import annotations

import ast
import gettext
import io
import os
import shutil
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from conftest import KATAS, ROOT, write_kata
from pytest_katas import catalog, manifest, messages

# Nothing here depends on the Python version: run on one of them (tox.ini).
pytestmark = pytest.mark.one_python

PLUGIN = ROOT / "plugin" / "pytest_katas"
PO = messages.LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "katas.po"
MO = PO.with_suffix(".mo")
STUB = "def answer():\n    raise NotImplementedError\n"
TEST = "def test_answer_is_42(kata):\n    assert kata.answer() == 42\n"
_KEYWORDS = {"_": (0,), "N_": (0,), "ngettext": (0, 1)}


@pytest.fixture
def locale(monkeypatch):
    """Set the locale of the runs a test starts, with no language chosen any other way."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE", messages.ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8")

    def set_locale(value: str) -> None:
        monkeypatch.setenv("LANG", value)

    set_locale("C.UTF-8")
    return set_locale


def _demo(pytester: pytest.Pytester) -> Path:
    folder = write_kata(pytester, STUB, TEST)
    (folder / "README.zh-CN.md").write_text("# demo\n", encoding="utf-8")
    manifest.write(pytester.path)
    return folder


# -- choosing the language ------------------------------------------------------------------


def test_a_chinese_locale_shows_the_pipe_board_and_headlines_in_chinese(pytester, locale):
    """``LANG=zh_CN.UTF-8 pytest katas/pipe`` on a copy of the pipe kata and its stub."""
    folder = pytester.path / "katas" / "pipe"
    shutil.copytree(KATAS / "pipe", folder, ignore=shutil.ignore_patterns("__pycache__"))
    manifest.write(pytester.path)
    locale("zh_CN.UTF-8")
    result = pytester.runpytest_subprocess("katas/pipe", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "TODO: pipe.relay 还没有实现：见 katas/pipe/README.zh-CN.md 的任务 1",
            "*= 练习进度 =*",
            "*pipe*0/2 个任务*0/10 分",
            "*任务 1 relay：一个子进程，用文件结束代替哨兵值*TODO*提示：*katas hint pipe 1",
            "*任务 2 fan_out：*TODO*提示：*katas hint pipe 2",
            "*TODO: 某个函数仍然抛出 NotImplementedError*",
        ]
    )
    assert "kata board" not in result.stdout.str()


@pytest.mark.parametrize("how", ["option", "environment", "ini"])
def test_the_language_can_be_chosen_by_option_environment_or_ini(
    pytester, locale, monkeypatch, how
):
    _demo(pytester)
    args = ["katas/demo", "-p", "no:cacheprovider"]
    if how == "option":
        args.append("--kata-lang=zh-CN")
    elif how == "environment":
        monkeypatch.setenv(messages.ENV, "zh-CN")
    else:
        pytester.makeini("[pytest]\nkata_lang = zh-CN\n")
    result = pytester.runpytest_subprocess(*args)
    result.stdout.fnmatch_lines(
        [
            "TODO: demo.answer 还没有实现：见 katas/demo/README.zh-CN.md 的任务 1",
            "*= 练习进度 =*",
            "*demo*0/1 个任务*0/1 分",
        ]
    )


def test_the_option_beats_a_chinese_locale(pytester, locale):
    _demo(pytester)
    locale("zh_CN.UTF-8")
    result = pytester.runpytest_subprocess("katas/demo", "--kata-lang=en")
    result.stdout.fnmatch_lines(
        ["TODO: demo.answer is not implemented yet: see katas/demo/README.md, task 1"]
    )


def test_english_is_the_default_and_reads_as_before(pytester, locale):
    _demo(pytester)
    result = pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "TODO: demo.answer is not implemented yet: see katas/demo/README.md, task 1",
            "*= kata board =*",
            "     demo         0/1 tasks    0/1 points",
            "    task 1 task 1 * TODO     hint: *katas hint demo 1",
            "     TODO: a function still raises NotImplementedError",
        ]
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--kata-lang=xx"],
            None,
            "--kata-lang: 'xx' is not valid: must be en (English) or zh-CN*",
        ),
        ([], "fr", "$PYTEST_KATA_LANG: 'fr' is not valid: must be en (English) or zh-CN*"),
    ],
)
def test_an_unknown_language_is_refused_with_where_it_came_from(
    pytester, locale, monkeypatch, args, env, message
):
    _demo(pytester)
    if env is not None:
        monkeypatch.setenv(messages.ENV, env)
    result = pytester.runpytest_subprocess("katas/demo", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_a_spawned_child_of_learner_code_speaks_the_language_of_the_run(pytester, locale):
    """--kata-lang reaches no child through the command line: it is exported to them."""
    impl = """
        import multiprocessing

        def _speak(conn):
            from pytest_katas import messages
            conn.send(messages.language())
            conn.close()

        def answer():
            ctx = multiprocessing.get_context("spawn")
            mine, theirs = ctx.Pipe()
            child = ctx.Process(target=_speak, args=(theirs,))
            child.start()
            said = mine.recv()
            child.join()
            return said
    """
    tests = "def test_the_child_speaks_chinese(kata):\n    assert kata.answer() == 'zh-CN'\n"
    write_kata(pytester, textwrap.dedent(impl), tests, timeout=30)
    manifest.write(pytester.path)
    result = pytester.runpytest_subprocess(
        "katas/demo", "--kata-lang=zh-CN", "--kata-start-method=spawn"
    )
    result.assert_outcomes(passed=1)


def test_the_locale_decides_when_nothing_else_does():
    assert messages.from_locale({"LANG": "zh_CN.UTF-8"}) == "zh-CN"
    assert messages.from_locale({"LANG": "zh_TW.UTF-8"}) == "zh-CN"
    assert messages.from_locale({"LC_ALL": "en_US.UTF-8", "LANG": "zh_CN.UTF-8"}) == "en"
    assert messages.from_locale({"LC_MESSAGES": "zh_CN", "LANG": "C"}) == "zh-CN"
    assert messages.from_locale({"LC_ALL": "", "LANG": "zh_CN"}) == "zh-CN"
    assert messages.from_locale({}) == "en"
    assert [messages.parse_language(s) for s in ("en", "zh-CN", "zh_cn", " ZH-CN ")] == [
        "en",
        "zh-CN",
        "zh-CN",
        "zh-CN",
    ]
    with pytest.raises(ValueError, match="must be en"):
        messages.parse_language("zh-TW")


# -- the board --------------------------------------------------------------------------------


def test_the_reference_solutions_board_is_not_the_learners_progress(pytester, locale):
    _demo(pytester)
    solution = pytester.path / "solutions" / "demo"
    solution.mkdir(parents=True)
    (solution / "demo.py").write_text("def answer():\n    return 42\n", encoding="utf-8")
    result = pytester.runpytest_subprocess("katas/demo", "--kata-target=solutions")
    result.stdout.fnmatch_lines(
        ["*= kata board: reference solutions (not your progress) =*", "pass demo*1/1 tasks*"]
    )
    assert "done" not in result.stdout.str()
    other = pytester.path / "elsewhere" / "demo"
    other.mkdir(parents=True)
    (other / "demo.py").write_text(STUB, encoding="utf-8")
    result = pytester.runpytest_subprocess("katas/demo", "--kata-target=elsewhere")
    result.stdout.fnmatch_lines(
        ["*= kata board: elsewhere (not your progress) =*", "*task 1 task 1*TODO"]
    )
    assert "hint:" not in result.stdout.str()
    result = pytester.runpytest_subprocess("katas/demo", "--kata-target=./katas")
    result.stdout.fnmatch_lines(["*= kata board =*", "*TODO*hint: *katas hint demo 1"])


# -- fast feedback, and the learner's command ------------------------------------------------

HANGS = """
import threading

def wait_forever():
    threading.Event().wait()

def answer():
    return 42

def todo():
    raise NotImplementedError
"""
# Task 1: a hang, then two tests it stops; task 2: one that passes and two that share a TODO.
HANG_TESTS = """
def test_first(kata):
    kata.wait_forever()

def test_second(kata):
    assert kata.answer() == 42

def test_third(kata):
    kata.wait_forever()

def test_other_task(kata):
    assert kata.answer() == 42

def test_todo_one(kata):
    kata.todo()

def test_todo_two(kata):
    kata.todo()
"""
HANG_TASKS = [
    (4, ["test_first", "test_second", "test_third"]),
    (6, ["test_other_task", "test_todo_one", "test_todo_two"]),
]


def test_a_hang_says_in_chinese_why_the_rest_of_its_task_did_not_run(pytester, locale):
    write_kata(pytester, HANGS, HANG_TESTS, timeout=5, tasks=HANG_TASKS)
    (pytester.path / "katas" / "demo" / "README.zh-CN.md").write_text("# demo\n", "utf-8")
    locale("zh_CN.UTF-8")
    result = pytester.runpytest_subprocess("katas/demo", "-p", "no:cacheprovider", "-ra")
    result.assert_outcomes(failed=3, skipped=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]2[]] katas/demo/test_demo.py:2: 未运行：同一任务中的 test_first 卡住了"
            "（HANG）；先修好它（加上 --kata-keep-going 则照样全部运行）",
        ]
    )
    result.stdout.fnmatch_lines(["*另有 1 个测试的失败与此相同，下面每个只显示一行。"])
    result.stdout.fnmatch_lines(["TODO: 与 test_todo_one 的失败相同，完整内容见上文"])
    faster = "卡住的测试可能要等满整个期限；在你修复它的期间，这条命令会更早停下："
    result.stdout.fnmatch_lines([f"{faster}*pytest* katas/demo -x --kata-timeout=3"])
    assert "not run: " not in result.stdout.str() and "A hang can" not in result.stdout.str()


def _katas(folder: Path, lang: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The learner's ``katas`` command, run in ``folder`` with the locale ``lang``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_KATA_")}
    env.update(LANG=lang, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest_katas.cli", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=env,
        check=False,
    )


def test_the_katas_command_speaks_the_language_of_the_locale(tmp_path, locale):
    """``LANG=zh_CN.UTF-8 katas hint pipe 1`` on a copy of this repository's katas/."""
    course = tmp_path / "course"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(KATAS, course / "katas", ignore=ignore)

    shown = _katas(course, "zh_CN.UTF-8", "hint", "pipe", "1")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "pipe，任务 1：relay：一个子进程，用文件结束代替哨兵值"
    assert "提示 1/3：" in lines
    assert "  Pipe 有两个端。在 fork 下，子进程会得到两端的副本" in shown.stdout
    assert (
        "下一条提示：" in shown.stdout and "你看到了哪一条记在 .katas/hints.json 里" in shown.stdout
    )
    assert "hint" not in shown.stdout.replace("katas hint pipe 1", "").replace("hints.json", "")

    english = _katas(course, "C.UTF-8", "hint", "pipe", "1", "--again")
    assert english.returncode == 0, english.stderr
    assert english.stdout.startswith("pipe, task 1: relay: one child, end of file instead of a")
    assert "hint 1 of 3:\n  A Pipe has two ends." in english.stdout

    listed = _katas(course, "zh_CN.UTF-8", "list")
    assert listed.returncode == 0, listed.stderr
    assert "->    1  pipe         0/2 个任务    0/10 分  还没有运行过" in listed.stdout
    assert "下一步：pipe 的任务 1（relay：一个子进程，用文件结束代替哨兵值）" in listed.stdout
    nxt = _katas(course, "zh_CN.UTF-8", "next")
    assert "  课程文件：katas/pipe/README.zh-CN.md" in nxt.stdout.splitlines()
    refused = _katas(course, "zh_CN.UTF-8", "hint", "pipe", "9")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "katas hint: pipe 练习没有任务 '9'；它的任务是 1, 2"


def test_pytest_kata_hint_speaks_the_language_of_the_run(pytester, locale):
    _demo(pytester)
    result = pytester.runpytest_subprocess("katas/demo", "--kata-hint=1", "--kata-lang=zh-CN")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "demo，任务 1：task 1",
            "提示 1/2：first hint",
            "（再运行一次同样的命令，看下一条提示）",
            "（你看到了哪一条记在 .katas/hints.json 里；从头再来：*katas hint demo 1 --reset）",
        ]
    )
    again = pytester.runpytest_subprocess("katas/demo", "--kata-hint=1")  # the locale: C
    again.stdout.fnmatch_lines(["demo, task 1: task 1", "hint 2 of 2: second hint"])


# -- the catalog ------------------------------------------------------------------------------


def _code_msgids() -> dict[str, str]:
    """Every message the plugin's code passes to ``_``, ``N_`` or ``ngettext`` (by AST, so a
    call inside an f-string counts too), with where it is."""
    found: dict[str, str] = {}
    for path in sorted(PLUGIN.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            positions = _KEYWORDS.get(node.func.id)
            if positions is None:
                continue
            where = f"{path.name}:{node.lineno}"
            for position in positions:
                arg = node.args[position] if len(node.args) > position else None
                assert not isinstance(arg, ast.JoinedStr), (
                    f"{where}: an f-string inside {node.func.id}(): use named placeholders "
                    "and .format() after the lookup"
                )
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.setdefault(arg.value, where)
    return found


def _kata_msgids() -> dict[str, str]:
    """Every kata's title, and each task's title and hints, from every kata.toml."""
    found: dict[str, str] = {}
    for kata in catalog.list_katas(KATAS):
        where = f"katas/{kata.name}/kata.toml"
        found.setdefault(kata.title, f"{where}: title")
        for task in kata.tasks:
            found.setdefault(task.title, f"{where}: task {task.id} title")
            for number, hint in enumerate(task.hints, 1):
                found.setdefault(hint, f"{where}: task {task.id} hint {number}")
    return found


def _po():
    with PO.open("rb") as handle:
        return read_po(handle, locale="zh_CN", domain=messages.DOMAIN)


def _fields(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _ids(message) -> tuple[str, ...]:
    """A message's msgids: one, or for ngettext its singular and its plural."""
    return tuple(message.id) if isinstance(message.id, (tuple, list)) else (message.id,)


def _strings(message) -> tuple[str, ...]:
    return tuple(message.string) if isinstance(message.string, (tuple, list)) else (message.string,)


def test_every_message_and_every_kata_text_has_a_chinese_translation():
    po = _po()
    translated = {
        msgid for m in po if m.id and all(_strings(m)) and not m.fuzzy for msgid in _ids(m)
    }
    wanted = {**_kata_msgids(), **_code_msgids()}
    assert len(_kata_msgids()) > 50 and len(_code_msgids()) > 100  # the walk found them
    missing = [f"{where}: {text!r}" for text, where in wanted.items() if text not in translated]
    assert not missing, "no zh-CN translation in katas.po for:\n" + "\n".join(missing)
    unused = [i for m in po if m.id for i in _ids(m) if i not in wanted]
    assert not unused, "katas.po translates text that nothing uses any more:\n" + "\n".join(
        map(repr, unused)
    )


def test_every_translation_keeps_the_placeholders_of_its_message():
    for message in _po():
        if message.id:
            fields = _fields(_ids(message)[-1])  # a plural's (each form is a plural in Chinese)
            for string in _strings(message):
                assert _fields(string) == fields, message.id


def test_the_committed_mo_is_compiled_from_the_current_po():
    """Recompile with: pybabel compile -D katas -d plugin/pytest_katas/locale"""
    fresh = io.BytesIO()
    write_mo(fresh, _po())
    fresh.seek(0)
    compiled = gettext.GNUTranslations(fresh)
    with MO.open("rb") as handle:
        committed = gettext.GNUTranslations(handle)
    stale = "katas.mo is out of date: pybabel compile -D katas -d plugin/pytest_katas/locale"
    assert committed._catalog == compiled._catalog, stale  # type: ignore[attr-defined]


def test_the_package_data_ships_the_catalogs():
    text = (ROOT / "plugin" / "pyproject.toml").read_text(encoding="utf-8")
    assert '"locale/*/LC_MESSAGES/*.mo"' in text
    assert MO.is_file()
