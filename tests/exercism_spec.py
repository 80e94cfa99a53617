"""The rules of Exercism's test-runner interface, version 3, as a checker of results.json.

Written from the interface's own text (exercism/docs, building/tooling/test-runners/
interface.md): top-level ``version``, ``status`` and ``message``, and per test ``name``,
``status``, ``message``, ``output``, ``test_code`` and ``task_id``. Keys the spec does not
name (our scores, kata, failure class, seed) are allowed: the spec's readers ignore them.
``problems`` returns every broken rule in words, so a failing test says which.
"""

from __future__ import annotations

from typing import Any, Final

STATUSES: Final = ("pass", "fail", "error")
MESSAGE_LIMIT: Final = 65535  # characters of a message
OUTPUT_LIMIT: Final = 500  # characters of a test's output, before the notice
TRUNCATED: Final = "Output was truncated. Please limit to 500 chars"


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _test_problems(where: str, test: Any) -> list[str]:
    if not isinstance(test, dict):
        return [f"{where}: is not an object"]
    found = []
    name, status, message = test.get("name"), test.get("status"), test.get("message")
    if not _is_text(name) or not name.strip():
        found.append(f"{where}: name must be non-empty text, not {name!r}")
    elif name.startswith("test_"):
        found.append(f"{where}: name {name!r} is a function name, not one a person reads")
    if status not in STATUSES:
        found.append(f"{where}: status must be one of {STATUSES}, not {status!r}")
    if status in ("fail", "error") and not (_is_text(message) and message.strip()):
        found.append(f"{where}: a {status} needs a message saying why")
    if status == "pass" and message is not None:
        found.append(f"{where}: a pass has a null message or none, not {message!r}")
    if _is_text(message) and len(message) > MESSAGE_LIMIT:
        found.append(f"{where}: message is over {MESSAGE_LIMIT} characters")
    output = test.get("output")
    if output is not None:
        if not _is_text(output):
            found.append(f"{where}: output must be text or null")
        elif len(output) > OUTPUT_LIMIT and not (
            output.endswith(TRUNCATED) and len(output) <= OUTPUT_LIMIT + len(TRUNCATED) + 2
        ):
            found.append(f"{where}: output over {OUTPUT_LIMIT} characters without the notice")
    if not _is_text(test.get("test_code")):
        found.append(f"{where}: test_code must be text (version 2 and 3 need it)")
    task_id = test.get("task_id")
    if task_id is not None and (type(task_id) is not int or task_id < 1):
        found.append(f"{where}: task_id must be a whole number from 1, not {task_id!r}")
    return found


def problems(report: Any) -> list[str]:
    """Every rule of the version 3 interface that ``report`` breaks (empty when none)."""
    if not isinstance(report, dict):
        return ["the report is not an object"]
    found = []
    if report.get("version") != 3:
        found.append(f"version must be 3, not {report.get('version')!r}")
    status, message, tests = report.get("status"), report.get("message"), report.get("tests")
    if status not in STATUSES:
        found.append(f"status must be one of {STATUSES}, not {status!r}")
    if status == "error" and not (_is_text(message) and message.strip()):
        found.append("an error needs a top-level message saying what went wrong")
    if status != "error" and message is not None:
        found.append(f"the top-level message is null unless the status is error: {message!r}")
    if _is_text(message) and len(message) > MESSAGE_LIMIT:
        found.append(f"the top-level message is over {MESSAGE_LIMIT} characters")
    if status in ("pass", "fail") and not isinstance(tests, list):
        found.append(f"a {status} needs a tests array")
    tests = tests if isinstance(tests, list) else []
    for number, test in enumerate(tests, 1):
        found += _test_problems(f"test {number}", test)
    statuses = [t.get("status") for t in tests if isinstance(t, dict)]
    if status == "pass" and any(s != "pass" for s in statuses):
        found.append("the status is pass, yet a test did not pass")
    if status == "fail" and not any(s in ("fail", "error") for s in statuses):
        found.append("the status is fail, yet no test failed or errored")
    names = [t.get("name") for t in tests if isinstance(t, dict)]
    if len(set(names)) != len(names):
        found.append("two tests have the same name")
    return found
