"""What learner code in the test's own process could change to forge a verdict: photographed
before the test body runs and compared after it. Any change fails the test as TAMPERED.

This is detection, not prevention: learner code that runs in the same process as the test
(the threads kata must) can in principle undo its changes or edit this photograph. It
catches replacing a test helper, the plugin's classifier or a builtin, and switching the
trace off; the README's grading section says what it cannot catch.
"""

from __future__ import annotations

import builtins
import collections
import sys
import types
from collections.abc import Iterable
from typing import Any, Final, final

__all__ = ["Snapshot", "plain_data_problem"]

_PLUGIN: Final = "pytest_katas"
_WATCHED_EXTRA: Final = ("_pytest.outcomes", "_pytest.python_api", "_pytest.runner")


def _code_of(value: Any) -> Any:
    return getattr(value, "__code__", None)


def _functions(module: types.ModuleType) -> dict[str, tuple[int, int | None]]:
    """Each function and class method defined in ``module``: its identity and code's."""
    found: dict[str, tuple[int, int | None]] = {}
    name = module.__name__
    for attr, value in list(vars(module).items()):
        if isinstance(value, types.FunctionType) and value.__module__ == name:
            found[attr] = (id(value), id(value.__code__))
        elif isinstance(value, type) and value.__module__ == name:
            found[attr] = (id(value), None)
            for method, member in list(vars(value).items()):
                function = getattr(member, "__func__", member)
                if isinstance(function, types.FunctionType):
                    found[f"{attr}.{method}"] = (id(function), id(function.__code__))
    return found


@final
class Snapshot:
    """The state that decides a verdict, as it was before learner code ran."""

    def __init__(self, modules: dict[str, types.ModuleType], tracing: bool) -> None:
        self._hooks = _hooks()
        self._modules = dict(modules)
        self._functions = {name: _functions(module) for name, module in modules.items()}
        self._builtins = {name: id(value) for name, value in vars(builtins).items()}
        self._tracing = tracing

    @classmethod
    def take(cls, test_modules: Iterable[types.ModuleType], tracing: bool) -> Snapshot:
        watched = {m.__name__: m for m in test_modules}
        for name, module in list(sys.modules.items()):
            if name == _PLUGIN or name.startswith(_PLUGIN + ".") or name in _WATCHED_EXTRA:
                if isinstance(module, types.ModuleType):
                    watched[name] = module
        return cls(watched, tracing)

    def changes(self) -> list[str]:
        """What differs now, in plain words (empty when nothing does)."""
        found = []
        for name, module in self._modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"the module {name} was replaced in sys.modules")
                continue
            now = _functions(module)
            for attr, before in self._functions[name].items():
                if now.get(attr) != before:
                    found.append(f"{name}.{attr} was replaced")
        for (owner, attr), identity in self._hooks.items():
            if id(getattr(owner, attr, None)) != identity:
                found.append(f"the plugin's hook on {_name(owner)}.{attr} was removed")
        for attr, identity in self._builtins.items():
            if id(vars(builtins).get(attr)) != identity:
                found.append(f"the builtin {attr} was replaced")
        if self._tracing:
            from pytest_katas import trace

            if trace.switched_off():
                found.append("the plugin's trace was switched off")
        return found


def _plugin_made(value: Any) -> bool:
    module = getattr(value, "__module__", None) or ""
    return getattr(value, "_kata_hook", False) or module.startswith(_PLUGIN)


def _hooks() -> dict[tuple[Any, str], int]:
    """What the plugin put in the standard library to watch and schedule learner code
    (its wrappers, its Lock and RLock, its sleep): learner code must leave them there."""
    import multiprocessing.process
    import threading
    import time

    from pytest_katas import wrapping

    places = [
        *wrapping.installed(),
        (threading, "Lock"),
        (threading, "RLock"),
        (threading, "_allocate_lock"),
        (time, "sleep"),
        (multiprocessing.process.BaseProcess, "start"),
    ]
    return {
        (owner, attr): id(value)
        for owner, attr in places
        if _plugin_made(value := getattr(owner, attr, None))
    }


def _name(owner: Any) -> str:
    return str(getattr(owner, "__qualname__", None) or getattr(owner, "__name__", owner))


PLAIN: Final = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    list,
    tuple,
    dict,
    set,
    frozenset,
)
# The standard library's data types a result may use as they are.
CONTAINERS: Final = (
    collections.Counter,
    collections.OrderedDict,
    collections.defaultdict,
    collections.deque,
)
_STDLIB_CONTAINERS: Final = ("collections",)


def plain_data_problem(value: Any, limit: int = 100_000) -> str | None:
    """Why ``value`` is not plain data the tests can compare honestly, or None.

    A subclass of a builtin type from learner code (an ``int`` whose ``__eq__`` is always
    true) is not; the standard library's (``collections.Counter``, ``defaultdict``) is."""
    stack = [value]
    seen = 0
    while stack and seen < limit:
        item = stack.pop()
        seen += 1
        kind = type(item)
        if kind not in PLAIN:
            base = next((p for p in PLAIN if isinstance(item, p)), None)
            if base is not None and kind.__module__ not in _STDLIB_CONTAINERS:
                return (
                    f"an instance of {kind.__qualname__} (a subclass of {base.__name__} defined in "
                    f"{kind.__module__}) where the contract wants a plain {base.__name__}"
                )
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return None
