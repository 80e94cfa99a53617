"""Each kata's contract table, read from its lessons (README.md and README.zh-CN.md).

A table row is ``| C<n> | what the contract asks | `test`, ... | `mutant`, ... |``: a clause
of the stub's docstrings, the tests that check it, and the known mistakes in
``tests/mutants/<kata>/`` that break it. ``tests/test_contracts.py`` checks the tables
against the files; the self-check checks that each mistake is caught by its clause's tests.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Final

from conftest import KATAS, MUTANTS

LESSONS: Final = {"en": "README.md", "zh-CN": "README.zh-CN.md"}
_ROW: Final = re.compile(r"^\|\s*(C\d+)\s*\|(.*)\|(.*)\|(.*)\|\s*$")
_NAME: Final = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


@dataclasses.dataclass(frozen=True)
class Clause:
    id: str
    text: str
    tests: tuple[str, ...]
    mutants: tuple[str, ...]


def contract(kata: str, lang: str = "en") -> dict[str, Clause]:
    """The clauses of ``kata``'s contract table in the lesson of ``lang``, by id, in order."""
    clauses: dict[str, Clause] = {}
    path = KATAS / kata / LESSONS[lang]
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        cid, text, tests, mutants = match.groups()
        if cid in clauses:
            raise AssertionError(f"{path.name} of {kata}: clause {cid} has two rows")
        clauses[cid] = Clause(
            cid, text.strip(), tuple(_NAME.findall(tests)), tuple(_NAME.findall(mutants))
        )
    return clauses


def clause_of(mutant: Path) -> str | None:
    """The ``clause: C<n>`` line of a mutant's docstring."""
    for line in mutant.read_text(encoding="utf-8").splitlines()[:12]:
        if line.startswith("clause:"):
            return line.removeprefix("clause:").strip()
    return None


def mutant_files(kata: str) -> list[Path]:
    return sorted((MUTANTS / kata).glob("*.py"))
