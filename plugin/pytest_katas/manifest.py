"""The tamper check: hashes of every kata test, kata conftest.py, kata.toml and plugin source.

Maintainers refresh it after changing any of those files::

    python -m pytest_katas.manifest            # rewrite katas/manifest.json
    python -m pytest_katas.manifest --check    # exit 1 and name the files if it is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Final

import pytest_katas

__all__ = ["MANIFEST", "changed_files", "snapshot", "write"]

MANIFEST: Final = Path("katas") / "manifest.json"
_PATTERNS: Final = ("katas/*/test_*.py", "katas/*/conftest.py", "katas/*/kata.toml")
_PLUGIN: Final = Path(pytest_katas.__file__).resolve().parent


def _digest(path: Path) -> str:
    # Line endings are normalised so that a checkout on Windows hashes the same.
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def snapshot(root: Path) -> dict[str, object]:
    """What the manifest of the katas under ``root`` should say now."""
    files = {
        path.relative_to(root).as_posix(): _digest(path)
        for pattern in _PATTERNS
        for path in sorted(root.glob(pattern))
    }
    plugin = {f"pytest_katas/{path.name}": _digest(path) for path in sorted(_PLUGIN.glob("*.py"))}
    return {"plugin_version": pytest_katas.__version__, "files": files, "plugin": plugin}


def write(root: Path) -> Path:
    path = root / MANIFEST
    path.write_text(json.dumps(snapshot(root), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def changed_files(root: Path) -> list[str]:
    """Every protected file that differs from the committed manifest, with how."""
    path = root / MANIFEST
    if not path.is_file():
        return [f"{MANIFEST.as_posix()} (missing: grading cannot tell edited tests apart)"]
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return [f"{MANIFEST.as_posix()} (not valid JSON)"]
    now = snapshot(root)
    changes = []
    if recorded.get("plugin_version") != now["plugin_version"]:
        changes.append(
            f"the plugin version ({now['plugin_version']}, manifest says "
            f"{recorded.get('plugin_version')})"
        )
    for section in ("files", "plugin"):
        old, new = recorded.get(section, {}), now[section]
        assert isinstance(new, dict)
        for name in sorted(set(old) | set(new)):
            if name not in new:
                changes.append(f"{name} (deleted)")
            elif name not in old:
                changes.append(f"{name} (added)")
            elif old[name] != new[name]:
                changes.append(f"{name} (edited)")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_katas.manifest", description=__doc__)
    parser.add_argument("root", nargs="?", default=".", help="the repository root")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    if args.check:
        changes = changed_files(root)
        for change in changes:
            print(f"stale: {change}")
        if changes:
            print("Refresh it with: python -m pytest_katas.manifest")
        return 1 if changes else 0
    print(f"wrote {write(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
