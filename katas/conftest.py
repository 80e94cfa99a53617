"""Runs before any kata test is collected: a pytest without the katas plugin stops here with
one line saying how to run the tests, instead of an import error or an unknown option."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

try:
    import pytest_katas  # noqa: F401  (only whether it imports matters)
except ImportError:
    _root = Path(__file__).resolve().parent.parent
    _venv = _root / ".venv" / "bin" / "pytest"
    _here = os.path.relpath(_venv) if _venv.exists() else None
    _activate = os.path.relpath(_venv.with_name("activate"))
    _args = shlex.join(sys.argv[1:]) or "katas/pipe"
    _zh = any(os.environ.get(k, "").startswith("zh") for k in ("LC_ALL", "LC_MESSAGES", "LANG"))
    if _here is not None:
        _line = (
            f"katas: this pytest ({sys.executable}) does not have the katas plugin; "
            f"run {_here} {_args} instead, or activate the venv first (source {_activate})."
        )
        _zh_line = (
            f"katas：当前的 pytest 没有安装 katas 插件；请改用 {_here} {_args}，"
            f"或先激活虚拟环境（source {_activate}）。"
        )
    else:
        _line = (
            f"katas: this pytest ({sys.executable}) does not have the katas plugin; set it "
            "up first, from the repository's folder: python3 -m venv .venv && "
            ".venv/bin/pip install -e ./plugin (see the README's Quick start)."
        )
        _zh_line = (
            "katas：当前的 pytest 没有安装 katas 插件；请先在仓库目录下按 README 的 Quick start "
            "安装：python3 -m venv .venv && .venv/bin/pip install -e ./plugin"
        )
    print(_zh_line if _zh else _line, file=sys.stderr)
    raise SystemExit(4) from None  # pytest's own code for a usage error
