"""``katas grade`` agrees with the self-check on a sample: per kata, its first mutant whose
docstring expects a race or a wrong-answer class fails with one of them, and its first
correct variant passes with full marks. The whole comparison, every mutant and variant test
by test against pytest mode, is bench/grade_parity.py."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MUTANTS, ROOT, VARIANTS, expected_kinds, katas, samples
from pytest_katas import box

GRADE_TIMEOUT = 600
# Classes a checked answer gives (not a clock or a resource count): race and wrong-answer.
ANSWER_KINDS = {"race", "wrong", "lost", "order", "contract"}

ISOLATION = box.probe()


def _sample(kata: str) -> tuple[Path, Path]:
    mutant = next(p for k, p in samples(MUTANTS) if k == kata and expected_kinds(p) & ANSWER_KINDS)
    variant = next(p for k, p in samples(VARIANTS) if k == kata)
    return mutant, variant


def _grade_kata(kata: str, tmp_path: Path) -> tuple[dict[str, dict], str]:
    """One ``katas grade --kata <kata> -n 2`` call for the kata's mutant and variant."""
    folder = tmp_path / kata
    submissions = []
    for role, source in zip(("mutant", "variant"), _sample(kata), strict=True):
        target = folder / role / "katas" / kata / f"{kata}.py"
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
        submissions.append(folder / role)
    reports = folder / "reports"
    command = [sys.executable, "-m", "pytest_katas.cli", "grade", *map(str, submissions)]
    command += ["--checkout", str(ROOT), "--report", str(reports), "--kata", kata]
    command += ["-n", "2", "--seed", "1"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=GRADE_TIMEOUT, cwd=folder)
    data = {
        role: json.loads((reports / f"{role}.json").read_text()) for role in ("mutant", "variant")
    }
    return data, run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.grader
@pytest.mark.skipif(
    ISOLATION.tool == "none" or ISOLATION.learner_user is None,
    reason=f"this host cannot box learner code ({ISOLATION.describe()})",
)
def test_a_mutant_and_a_variant_of_every_kata_grade_as_the_self_check_says(tmp_path):
    # Two katas at once: echo_server's mutant (send_not_sendall) takes about 50 s alone, the
    # other four katas together about as long, so the test takes about 50 s, not 100.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = pool.map(lambda kata: _grade_kata(kata, tmp_path), katas())
        graded = dict(zip(katas(), runs, strict=True))
    problems = []
    for kata, (reports, output) in graded.items():
        mutant_path, variant_path = _sample(kata)
        mutant, variant = reports["mutant"], reports["variant"]
        expected = expected_kinds(mutant_path)
        classes = [t["failure_class"] for t in mutant["tests"] if t["status"] != "pass"]
        if mutant["status"] != "fail" or not expected & set(classes):
            problems.append(
                f"{kata}/{mutant_path.stem} (mutant, expect {sorted(expected)}): "
                f"{mutant['status']} {mutant['score']}/{mutant['max_score']}, classes {classes}, "
                f"{mutant.get('message')}"
            )
        if variant["status"] != "pass" or variant["score"] != variant["max_score"]:
            failed = [
                f"{t['test']}: {t['failure_class']}: {(t['message'] or '')[:300]}"
                for t in variant["tests"]
                if t["status"] != "pass"
            ]
            problems.append(
                f"{kata}/{variant_path.stem} (variant): {variant['status']} "
                f"{variant['score']}/{variant['max_score']}, {variant.get('message')}: {failed}"
                f"\n{output[-1500:]}"
            )
    assert not problems, "\n\n".join(problems)
