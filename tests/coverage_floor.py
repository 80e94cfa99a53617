"""The plugin's coverage report, with a floor on the share of lines run (tox -e py312).

``coverage report --fail-under`` judges lines and branches together; the floor we promise is
on lines, so this prints coverage's own table and then checks the line figure itself::

    python tests/coverage_floor.py --lines 90 --include "*/pytest_katas/*"

Exits 2 (with the figures) when the lines run are below the floor.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import coverage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=float, required=True, help="floor, in percent of lines")
    parser.add_argument("--include", required=True, help="which files, as coverage's --include")
    args = parser.parse_args()
    cov = coverage.Coverage()
    cov.load()
    cov.report(include=[args.include], skip_empty=True)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "coverage.json"
        cov.json_report(outfile=str(out), include=[args.include])
        totals = json.loads(out.read_text(encoding="utf-8"))["totals"]
    lines = 100 * totals["covered_lines"] / max(totals["num_statements"], 1)
    branches = 100 * totals.get("covered_branches", 0) / max(totals.get("num_branches", 0), 1)
    print(
        f"lines {lines:.1f}% ({totals['covered_lines']}/{totals['num_statements']}), "
        f"branches {branches:.1f}%, together {totals['percent_covered']:.1f}%; "
        f"floor: {args.lines:g}% of lines"
    )
    if lines < args.lines:
        print(f"FAIL: {lines:.1f}% of lines run, under the floor of {args.lines:g}%")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
