"""Every kata's contract is a table in its lessons: each clause of the docstrings, the tests
that check it, the mistakes that break it. These checks hold the tables to the files; the
self-check (test_selfcheck.py) runs each mistake and checks its clause's tests catch it."""

from __future__ import annotations

import pytest

from conftest import kata_test_names, katas
from contracts import LESSONS, clause_of, contract, mutant_files

# Reading files: nothing here depends on the Python version (tox.ini).
pytestmark = pytest.mark.one_python


@pytest.mark.parametrize("kata", katas())
def test_every_clause_names_real_tests_and_real_mistakes(kata):
    clauses = contract(kata)
    assert clauses, f"katas/{kata}/README.md has no contract table (rows '| C1 | ... |')"
    tests, mutants = set(kata_test_names(kata)), {p.stem for p in mutant_files(kata)}
    for clause in clauses.values():
        assert clause.tests, f"{kata} {clause.id} ({clause.text}) has no test"
        assert clause.mutants, f"{kata} {clause.id} ({clause.text}) has no mutant"
        assert set(clause.tests) <= tests, (
            f"{kata} {clause.id}: no such test(s) in test_{kata}.py: {set(clause.tests) - tests}"
        )
        missing = set(clause.mutants) - mutants
        assert not missing, (
            f"{kata} {clause.id}: no such mutant(s) in tests/mutants/{kata}/: {missing}"
        )


@pytest.mark.parametrize("kata", katas())
def test_every_test_and_every_mistake_belongs_to_a_clause(kata):
    clauses = contract(kata).values()
    named_tests = {t for c in clauses for t in c.tests}
    named_mutants = {m for c in clauses for m in c.mutants}
    unnamed = set(kata_test_names(kata)) - named_tests
    assert not unnamed, f"tests of {kata} in no clause of its contract table: {sorted(unnamed)}"
    ids = {c.id: c for c in clauses}
    for path in mutant_files(kata):
        assert path.stem in named_mutants, f"tests/mutants/{kata}/{path.name} is in no clause"
        clause = clause_of(path)
        assert clause in ids, (
            f"tests/mutants/{kata}/{path.name}: its docstring needs a 'clause: C<n>' line "
            f"naming one of {sorted(ids)}, not {clause!r}"
        )
        assert path.stem in ids[clause].mutants, (
            f"tests/mutants/{kata}/{path.name} says it breaks {clause}, whose row does not name it"
        )


@pytest.mark.parametrize("kata", katas())
def test_both_lessons_have_the_same_contract(kata):
    english = contract(kata)
    for lang in LESSONS:
        other = contract(kata, lang)
        assert [(c.id, c.tests, c.mutants) for c in other.values()] == [
            (c.id, c.tests, c.mutants) for c in english.values()
        ], f"the contract tables of {kata}'s README.md and {LESSONS[lang]} differ"
