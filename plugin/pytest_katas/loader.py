"""Loading the learner's module lazily, and explaining in plain words when it does not load."""

from __future__ import annotations

import functools
import importlib.util
import linecache
import sys
import threading
import traceback
import types
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, final

from pytest_katas import boot, integrity
from pytest_katas.catalog import Kata
from pytest_katas.messages import _, language
from pytest_katas.verdict import fail_as

__all__ = ["KataTarget", "TargetImportError", "describe_not_implemented", "lesson"]


class TargetImportError(Exception):
    """The learner's file could not be imported; the message says where and why."""


def _import_error_message(kata: Kata, path: Path, exc: BaseException) -> str:
    shown = kata.relpath(path)
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        where = _("{file}, line {line}").format(file=shown, line=exc.lineno)
        code = (exc.text or "").rstrip("\n")
        pointer = f"\n    {code}\n    {' ' * max((exc.offset or 1) - 1, 0)}^" if code else ""
        return f"{where}: {type(exc).__name__}: {exc.msg}{pointer}\n" + _(
            "Python cannot read {file}, so none of the {kata} tests can run. Fix that line, "
            "then run the tests again."
        ).format(file=shown, kata=kata.name)
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    where = _("{file}, line {line}").format(file=shown, line=line) if line else shown
    return (
        _("{where}: importing it raised {exception}: {message}").format(
            where=where, exception=type(exc).__name__, message=exc
        )
        + "\n"
        + _(
            "The {kata} tests import {file} first; fix the error above, then run them again."
        ).format(kata=kata.name, file=shown)
    )


@final
class KataTarget:
    """The implementation under test, imported on first use as ``kata_<name>``.

    Importing lazily keeps learner code out of the pytest process: the first attribute
    access happens inside the test's sandbox, and spawn children import it by name.
    """

    def __init__(self, kata: Kata, path: Path) -> None:
        self._kata = kata
        self._path = path

    @property
    def kata(self) -> Kata:
        return self._kata

    @property
    def path(self) -> Path:
        return self._path

    _loading = threading.Lock()  # a test's threads may all touch the target at once

    def load(self) -> ModuleType:
        __tracebackhide__ = True
        with self._loading:
            return self._load()

    def _load(self) -> ModuleType:
        __tracebackhide__ = True
        name = self._kata.module_name
        module = sys.modules.get(name)
        if module is not None:  # imported already, maybe by the import system in a child hook
            initializing = getattr(module.__spec__, "_initializing", False)
            return importlib.import_module(name) if initializing else module
        spec = boot.kata_spec(name, str(self._path))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - even sys.exit() at import is the learner's
            del sys.modules[name]
            linecache.checkcache(str(self._path))
            raise TargetImportError(_import_error_message(self._kata, self._path, exc)) from None
        return module

    def __getattr__(self, attribute: str) -> Any:
        __tracebackhide__ = True
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        from pytest_katas import remote  # it builds on this module

        learner = remote.active()
        if learner is not None:  # the test body runs apart: learner code runs over there
            return learner.attribute(attribute)
        module = self.load()
        try:
            value = getattr(module, attribute)
        except AttributeError:
            raise AttributeError(
                _(
                    "{file} has no {name}: the {kata} kata expects it to define {attribute} "
                    "(see {lesson})"
                ).format(
                    file=self._kata.relpath(self._path),
                    name=repr(attribute),
                    kata=self._kata.name,
                    attribute=attribute,
                    lesson=self._kata.relpath(lesson(self._kata)),
                )
            ) from None
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            return _plain_results(value)
        return value

    def __repr__(self) -> str:
        return f"<kata {self._kata.name} from {self._kata.relpath(self._path)}>"


def _plain_results(function: Any) -> Any:
    """``function``, returning only plain data: what a test compares must compare honestly
    (an ``int`` subclass whose ``__eq__`` is always true is not an answer)."""

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        result = function(*args, **kwargs)
        problem = integrity.plain_data_problem(result)
        if problem is not None:
            raise fail_as("wrong", f"{function.__name__}() returned {problem}")
        return result

    return checked


def describe_not_implemented(
    kata: Kata, path: Path, tb: TracebackType | None, test_name: str
) -> str | None:
    """``pipe.relay is not implemented yet: see ...`` if ``tb`` ends in the learner's stub."""
    function = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == str(path):
            function = getattr(code, "co_qualname", code.co_name)
        tb = tb.tb_next
    if function is None:
        return None
    task = kata.task_of(test_name)
    shown = kata.relpath(lesson(kata))
    where = _("{lesson}, task {id}").format(lesson=shown, id=task.id) if task else shown
    return _("{function} is not implemented yet: see {where}").format(
        function=f"{kata.name}.{function}", where=where
    )


def lesson(kata: Kata) -> Path:
    """The kata's lesson in the learner's language: README.zh-CN.md next to README.md."""
    if language() != "en":
        translated = kata.directory / f"README.{language()}.md"
        if translated.is_file():
            return translated
    return kata.lesson
