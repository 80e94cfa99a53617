"""The self-check: every solution passes, every stub fails, every mutant is caught, every
correct variant passes. A new kata, mutant or variant is picked up with no edit here."""

from __future__ import annotations

import multiprocessing
import re

import pytest

from conftest import (
    KATAS,
    MUTANTS,
    ROOT,
    VARIANTS,
    expected_kinds,
    kata_test_names,
    katas,
    run_kata,
    samples,
)
from contracts import clause_of, contract
from pytest_katas.catalog import load_kata

METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]


@pytest.mark.parametrize("kata", katas())
def test_every_kata_has_its_files(kata):
    folder = KATAS / kata
    for name in (f"{kata}.py", f"test_{kata}.py", "README.md", "README.zh-CN.md", "kata.toml"):
        assert (folder / name).is_file(), f"katas/{kata}/{name} is missing"
    assert (ROOT / "solutions" / kata / f"{kata}.py").is_file(), (
        f"solutions/{kata}/{kata}.py is missing"
    )


@pytest.mark.parametrize("kata", katas())
def test_every_test_belongs_to_exactly_one_task(kata):
    manifest = load_kata(KATAS / kata)
    names = kata_test_names(kata)
    listed = [t for task in manifest.tasks for t in task.tests]
    assert sorted(set(listed)) == sorted(listed), "a test is listed under two tasks"
    assert set(listed) == set(names), (
        f"kata.toml and test_{kata}.py disagree: unlisted {set(names) - set(listed)}, "
        f"missing {set(listed) - set(names)}"
    )
    for task in manifest.tasks:
        assert len(task.hints) >= 2, f"task {task.id} needs hints from gentle to explicit"
        assert task.points > 0


# spawn and forkserver children boot the same way (pytest_katas._childmain) on every Python:
# spawn, the costlier, runs on one Python (tox.ini), fork and forkserver on all of them.
@pytest.mark.parametrize(
    "method",
    [pytest.param(m, marks=pytest.mark.one_python) if m == "spawn" else m for m in METHODS],
)
@pytest.mark.parametrize("kata", katas())
def test_the_solution_passes_every_test(kata, method, tmp_path):
    # The full stress budget on correct code is the soak's job (bench/soak.py); here a
    # shorter one still runs every stress scenario under noise, several times.
    run = run_kata(kata, "solutions", tmp_path, "--kata-stress-budget=0.5", method=method)
    assert run.cases, f"no test ran:\n{run.explain()}"
    failed = run.failed()
    assert not failed and run.returncode == 0, (
        f"solutions/{kata} failed under {method}: {[c.name for c in failed]}\n{run.explain()}"
    )


@pytest.mark.one_python
@pytest.mark.parametrize("kata", katas())
def test_the_untouched_stub_fails_every_test(kata, tmp_path):
    run = run_kata(kata, "katas", tmp_path)
    passed = [c.name for c in run.cases.values() if c.status == "passed"]
    assert run.cases and not passed, f"these tests pass on the stub, so assert nothing: {passed}"
    for case in run.cases.values():
        assert case.kind == "todo", f"{case.name} should say what is not implemented:\n{case.text}"
        assert "is not implemented yet: see katas/" in case.text


@pytest.mark.mutants
@pytest.mark.parametrize(
    "kata,path", samples(MUTANTS), ids=[f"{k}/{p.stem}" for k, p in samples(MUTANTS)]
)
def test_every_mutant_is_caught(kata, path, tmp_path):
    run = run_kata(kata, str(path), tmp_path, "-x", "--kata-timeout=5")
    failed = run.failed()
    assert failed, f"mutant {kata}/{path.stem} passed every test: it is not caught\n{run.explain()}"
    expected = expected_kinds(path)
    assert failed[0].kind in expected, (
        f"mutant {kata}/{path.stem} failed as {failed[0].kind}, expected one of {expected}:\n"
        f"{failed[0].text[:3000]}"
    )
    # It breaks one clause of the contract (its docstring says which): a test of that
    # clause must be the one that catches it.
    clause = contract(kata)[str(clause_of(path))]
    first = failed[0].name.split("[", 1)[0]
    assert first in clause.tests, (
        f"mutant {kata}/{path.stem} breaks {clause.id} ({clause.text}), yet it failed first in "
        f"{first}, which is not one of that clause's tests {clause.tests}"
    )


# Mutants whose docstring says `trace: race`: the trace alone must catch them, every run.
RACES = [(k, p) for k, p in samples(MUTANTS) if expected_kinds(p, "trace") == {"race"}]


@pytest.mark.mutants
@pytest.mark.parametrize("kata,path", RACES, ids=[f"{k}/{p.stem}" for k, p in RACES])
def test_every_race_mutant_is_caught_without_noise_with_its_interleaving(kata, path, tmp_path):
    run = run_kata(kata, str(path), tmp_path, "-x", "--kata-timeout=5", "--kata-noise=off")
    failed = run.failed()
    assert failed, f"race mutant {kata}/{path.stem} passed with the noise off\n{run.explain()}"
    assert failed[0].kind == "race", f"{kata}/{path.stem}: {failed[0].text[:2000]}"
    table = [line for line in failed[0].text.splitlines() if " | " in line]
    assert len(table) >= 2, f"no interleaving table in:\n{failed[0].text[:2000]}"


def _table_and_token(text: str) -> tuple[list[str], str | None]:
    table = [line for line in text.splitlines() if " | " in line or line.startswith("  ---")]
    token = re.search(r"--kata-schedule=(k1-[a-z2-7]+)", text)
    return table, token.group(1) if token else None


@pytest.mark.mutants
@pytest.mark.parametrize("kata,path", RACES, ids=[f"{k}/{p.stem}" for k, p in RACES])
def test_every_race_mutant_fails_with_the_same_interleaving_under_fork_spawn_and_replay(
    kata, path, tmp_path
):
    args = ("-x", "-m", "kata_stress", "--kata-seed=11", "--kata-timeout=20")
    for name in ("fork", "spawn", "replay"):
        (tmp_path / name).mkdir()
    runs = {m: run_kata(kata, str(path), tmp_path / m, *args, method=m) for m in ("fork", "spawn")}
    seen = {}
    for method, run in runs.items():
        failed = run.failed()
        assert failed and failed[0].kind == "race", f"{method}: {run.explain()}"
        seen[method] = _table_and_token(failed[0].text)
    assert seen["fork"][0], f"no interleaving table:\n{runs['fork'].failed()[0].text[:2000]}"
    assert seen["fork"] == seen["spawn"], "the same schedule, byte for byte, fork or spawn"
    token = seen["fork"][1]
    if token is not None:  # found by a schedule (not only by the trace): it replays exactly
        again = run_kata(kata, str(path), tmp_path / "replay", *args, f"--kata-schedule={token}")
        failed = again.failed()
        assert failed and _table_and_token(failed[0].text) == seen["fork"], again.explain()


@pytest.mark.variants
@pytest.mark.parametrize(
    "kata,path", samples(VARIANTS), ids=[f"{k}/{p.stem}" for k, p in samples(VARIANTS)]
)
def test_every_correct_variant_passes(kata, path, tmp_path):
    run = run_kata(kata, str(path), tmp_path)
    failed = run.failed()
    assert run.cases and not failed, (
        f"correct variant {kata}/{path.stem} failed: a false alarm\n{run.explain()}"
    )


# What a child inherits or is passed differs by start method, and so does the trace's
# view of it (ends inherited or received, locks by address or by name): the process katas'
# variants run under the other start methods too.
SPAWNED = [
    (k, p, m)
    for k, p in samples(VARIANTS)
    if k in ("pipe", "manager", "pool")
    for m in METHODS
    if m != "fork"
]


@pytest.mark.variants
@pytest.mark.parametrize(
    "kata,path,method", SPAWNED, ids=[f"{k}/{p.stem}-{m}" for k, p, m in SPAWNED]
)
def test_every_process_variant_passes_under_every_start_method(kata, path, method, tmp_path):
    run = run_kata(kata, str(path), tmp_path, "--kata-stress-budget=0.5", method=method)
    failed = run.failed()
    assert run.cases and not failed, (
        f"correct variant {kata}/{path.stem} failed under {method}: a false alarm\n{run.explain()}"
    )


def test_every_mutant_and_variant_names_its_kata_and_bug():
    for folder in (MUTANTS, VARIANTS):
        for path in folder.glob("*/*.py"):
            first = path.read_text(encoding="utf-8").lstrip('"\n').splitlines()[0]
            assert first.startswith(("MUTANT:", "VARIANT:")), f"{path}: say what it is"
            assert path.parent.name in katas(), f"{path}: {path.parent.name} is not a kata"


def test_a_new_kata_is_picked_up_with_no_edit_here(tmp_path, monkeypatch):
    import conftest

    fake = tmp_path / "katas" / "zzz"
    fake.mkdir(parents=True)
    (fake / "kata.toml").write_text('title = "z"\norder = 99\n', encoding="utf-8")
    monkeypatch.setattr(conftest, "KATAS", tmp_path / "katas")
    assert conftest.katas() == ["zzz"]


def test_the_tamper_manifest_is_fresh():
    from pytest_katas.manifest import changed_files

    stale = changed_files(ROOT)
    assert not stale, (
        "katas/manifest.json is stale; refresh it with `python -m pytest_katas.manifest`: "
        + "; ".join(stale)
    )
