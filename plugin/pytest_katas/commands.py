"""The commands we print for a learner to run next, spelled so they work where they read them.

A bare ``pytest ...`` or ``katas ...`` only works when the shell finds *this* environment's
script first (the venv is activated). Otherwise we print the script's path (``.venv/bin/katas``)
or, when there is no script at all, ``python -m ...`` with this interpreter.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["argv", "katas_command", "pytest_command", "script", "shown"]

_MODULES = {"pytest": "pytest", "katas": "pytest_katas.cli"}


def shown(path: Path | str) -> str:
    """``path`` relative to the current folder when it is inside it, else absolute."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive (not on Linux)
        return str(path)
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)
    return str(path) if outside else relative


def script(name: str) -> str:
    """How to call this environment's ``name`` script (``pytest`` or ``katas``) from a shell."""
    mine = Path(sys.executable).parent / name
    found = shutil.which(name)
    if found is not None and mine.exists() and os.path.samefile(found, mine):
        return name
    if mine.exists():
        here = shown(mine)
        return here if os.sep in here else f".{os.sep}{here}"
    return f"{shlex.quote(shown(Path(sys.executable)))} -m {_MODULES.get(name, name)}"


def argv(name: str) -> list[str]:
    """:func:`script` as a list of words, to go in front of a command's own arguments."""
    return shlex.split(script(name))


def _join(name: str, args: tuple[str, ...]) -> str:
    return " ".join([script(name), *(shlex.quote(a) for a in args)])


def pytest_command(*args: str) -> str:
    """``pytest ARGS``, as this environment's pytest is called from the current folder."""
    return _join("pytest", args)


def katas_command(*args: str) -> str:
    """``katas ARGS``, as this environment's ``katas`` command is called from here."""
    return _join("katas", args)
