"""``katas``: the project's command. ``katas grade`` grades submissions for an instructor.

Exit codes: 0 when every submission passed, 1 when one did not, 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pytest_katas import grade
from pytest_katas.catalog import KataError

__all__ = ["main"]

FORMATS: Final = ("exercism", "classroom", "junit")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of jobs of 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="katas", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    g = verbs.add_parser(
        "grade",
        help="grade submissions in a box, from this checkout's tests",
        description=(
            "Grade each SUBMISSION (a folder laid out like this repository) with the tests of "
            "the checkout it is run from. Only katas/<kata>/<kata>.py is taken from a "
            "submission; its tests, configuration and everything else are ignored."
        ),
    )
    g.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION")
    g.add_argument(
        "--report",
        required=True,
        type=Path,
        metavar="FILE",
        help="where the report goes; with several submissions, a folder of reports",
    )
    g.add_argument(
        "--kata",
        action="append",
        default=[],
        dest="only",
        metavar="KATA",
        help="grade only this kata (repeat for more; default: every kata)",
    )
    g.add_argument("--format", choices=FORMATS, default="exercism", dest="fmt")
    g.add_argument("-n", "--jobs", type=_positive, default=1, help="submissions at once")
    g.add_argument("--seed", type=int, default=None, help="the schedule seed (default: new)")
    g.add_argument("--start-method", choices=("fork", "spawn", "forkserver"), default=None)
    g.add_argument(
        "--isolation",
        choices=("auto", "bubblewrap", "unshare", "none"),
        default="auto",
        help="the box to use (auto: the strongest this host allows)",
    )
    g.add_argument(
        "--checkout",
        type=Path,
        default=Path.cwd(),
        help="the instructor's checkout whose tests grade (default: the current folder)",
    )
    return parser


def _stop(signum: int, frame: object) -> None:
    grade.STOP.set()  # every box is ended, then its report says error
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    if args.verb == "grade":
        return _grade(args)
    return 2  # pragma: no cover - argparse requires a verb


def _report_paths(report: Path, names: Sequence[str], fmt: str) -> list[Path]:
    suffix = ".xml" if fmt == "junit" else ".json"
    if len(names) == 1:
        return [report]
    return [report / f"{name}{suffix}" for name in names]


def _grade(args: argparse.Namespace) -> int:
    checkout = args.checkout.resolve()
    missing = [str(s) for s in args.submissions if not s.is_dir()]
    if missing:
        print(f"katas grade: no such submission folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    options = grade.GradeOptions(
        checkout=checkout,
        fmt=args.fmt,
        jobs=args.jobs,
        seed=args.seed if args.seed is not None else grade.new_seed(),
        start_method=args.start_method,
        isolation=args.isolation,
        only=tuple(args.only),
    )
    try:
        katas = grade.katas_of(checkout, options.only)
    except KataError as exc:
        print(f"katas grade: the checkout's katas cannot be used: {exc}", file=sys.stderr)
        return 2
    names = grade.names(args.submissions)
    paths = dict(zip(names, _report_paths(args.report, names, args.fmt), strict=True))
    for name, path in paths.items():  # until a submission is graded, its report says error
        _write(path, grade.error_report(katas, "grading did not finish"), args.fmt, name)
    print(f"katas grade: {len(names)} submission(s), seed {options.seed}, from {checkout}")

    def done(graded: grade.Graded) -> None:
        _write(paths[graded.name], graded.report, args.fmt, graded.name)
        if len(names) == 1:
            sys.stdout.write(graded.output)
        print(f"graded {graded.line()}", flush=True)

    results = grade.grade_all(options, katas, args.submissions, done)
    if len(names) > 1:
        index = {
            g.name: {k: g.report.get(k) for k in ("status", "score", "max_score")} for g in results
        }
        _atomic(args.report / "index.json", json.dumps(index, indent=2) + "\n")
    isolation = results[0].report.get("isolation", {}) if results else {}
    if isolation.get("tool") == "none" or not isolation.get("learner_user"):
        print(
            "katas grade: WARNING: learner code was not fully isolated here "
            f"({isolation.get('summary', '?')}); see the README's section on grading.",
            file=sys.stderr,
        )
    return 0 if all(g.status == "pass" for g in results) else 1


def _write(path: Path, report: dict[str, Any], fmt: str, name: str) -> None:
    if fmt == "junit":
        text = junit(report, name)
    elif fmt == "classroom":
        text = json.dumps(classroom(report), indent=2, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    _atomic(path, text)


def _atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def classroom(report: dict[str, Any]) -> dict[str, Any]:
    """GitHub Classroom's runner result, from a checked report."""
    return {
        "version": 1,
        "status": report["status"],
        "max_score": report["max_score"],
        "tests": [
            {
                "name": f"{t['kata']}: {t['name']}",
                "status": t["status"],
                "score": t["score"],
                "message": t.get("message"),
                "test_code": t.get("test_code") or "",
                "filename": f"katas/{t['kata']}/test_{t['kata']}.py",
                "line_no": 0,
                "duration": 0,
            }
            for t in report["tests"]
        ],
    }


def junit(report: dict[str, Any], name: str) -> str:
    """A JUnit XML file: one suite per kata, the grade in its properties."""
    suites = ET.Element("testsuites", name=f"katas grade {name}")
    for kata, grades in report.get("katas", {}).items():
        tests = [t for t in report["tests"] if t["kata"] == kata]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=kata,
            tests=str(len(tests)),
            failures=str(sum(t["status"] == "fail" for t in tests)),
            errors=str(sum(t["status"] == "error" for t in tests)),
        )
        props = ET.SubElement(suite, "properties")
        for key in ("score", "max_score"):
            ET.SubElement(props, "property", name=key, value=str(grades[key]))
        for test in tests:
            case = ET.SubElement(suite, "testcase", classname=f"katas.{kata}", name=test["name"])
            if test["status"] != "pass":
                tag = "failure" if test["status"] == "fail" else "error"
                element = ET.SubElement(case, tag, message=(test.get("message") or "")[:200])
                element.text = test.get("message") or ""
    props = ET.SubElement(suites, "properties")
    for key in ("status", "score", "max_score"):
        ET.SubElement(props, "property", name=key, value=str(report.get(key)))
    if report.get("message"):
        ET.SubElement(props, "property", name="message", value=str(report["message"]))
    return ET.tostring(suites, encoding="unicode") + "\n"


if __name__ == "__main__":
    sys.exit(main())
