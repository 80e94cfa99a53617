"""Attack: at import, write a 'passed' result into the run directory the environment names,
then leave before the test can fail."""

import json
import os

rundir = os.environ.get("PYTEST_KATA_RUNDIR")
if rundir:
    with open(os.path.join(rundir, "result.json"), "w") as f:
        json.dump(
            {
                "status": "passed",
                "kind": None,
                "message": "",
                "details": "",
                "seed": None,
                "duration": 0.1,
                "skip": None,
                "traced": False,
                "explored": [],
            },
            f,
        )
    os._exit(0)


def relay(items):
    raise NotImplementedError


def fan_out(items, consumers=3):
    raise NotImplementedError
