"""Attack: find the test's SandboxSpec among the interpreter's objects (gc) and write a
'passed' result carrying the proof it holds, then leave before the test body can fail.
Against a test body that runs in the learner's own process this took a dozen lines; the
pipe kata's test body runs apart, in a process this code cannot read."""

import gc
import os

for _spec in gc.get_objects():
    if type(_spec).__name__ == "SandboxSpec" and hasattr(_spec, "nonce"):
        _channel = __import__("pytest_katas.channel", fromlist=["ResultRecord"])
        _spec.rundir.write_result(
            _channel.ResultRecord(
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
                _spec.nonce,
            )
        )
        os._exit(0)


def relay(items):
    raise NotImplementedError


def fan_out(items, consumers=3):
    raise NotImplementedError
