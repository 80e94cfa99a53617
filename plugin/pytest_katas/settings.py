"""Every option, ini key and environment variable of the plugin, resolved in one place.

Precedence, highest first: a test's marker, the command line, the PYTEST_KATA_* environment
variable, the kata's kata.toml, the ini file, the built-in default. A bad value fails with a
message that names where it came from.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
from collections.abc import Callable
from typing import Any, Final, final

import pytest

__all__ = ["SETTINGS", "Setting", "add_options", "parse_size", "resolve"]


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be more than 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _start_method(text: str) -> str:
    methods = multiprocessing.get_all_start_methods()
    if text not in methods:
        raise ValueError(f"must be one of {', '.join(methods)}")
    return text


def _on_off(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("on", "off"):
        raise ValueError("must be on or off")
    return value == "on"


def _schedule_token(text: str) -> str:
    from pytest_katas.explore import TokenError, decode

    try:
        decode(text)
    except TokenError as exc:
        raise ValueError(
            f"this is not a schedule token ({exc}); copy it whole from the line "
            "'Replay this exact schedule: ...' of a failure"
        ) from None
    return text.strip()


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``512MiB``, ``2g``, ``1048576`` -> bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError("must be a size such as 512MiB or 2GiB")
    number, unit = float(match.group(1)), (match.group(2) or "b").lower()
    scale = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit[0]]
    if number <= 0:
        raise ValueError("must be more than 0")
    return int(number * scale)


def _platform_start_method() -> str:
    return (
        multiprocessing.get_start_method(allow_none=True)
        or (multiprocessing.get_all_start_methods()[0])
    )


@final
@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # the ini key and marker name; the option is --kata-<rest with dashes>
    help: str
    parse: Callable[[str], Any]
    default: Callable[[], Any]
    ini: bool = True

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.name

    @property
    def env(self) -> str:
        return "PYTEST_" + self.name.upper()


SETTINGS: Final = {
    s.name: s
    for s in (
        Setting(
            "kata_target",
            "what to test: 'katas' (your code, the default), 'solutions' (the reference), "
            "a folder laid out like katas/, or one .py file",
            str,
            lambda: "katas",
            ini=False,
        ),
        Setting(
            "kata_start_method",
            "how learner code starts processes: fork, spawn or forkserver "
            f"(default: the platform's, here {_platform_start_method()})",
            _start_method,
            _platform_start_method,
        ),
        Setting(
            "kata_timeout",
            "seconds a kata test may run before it fails as a hang "
            "(default: the kata's kata.toml, else 10)",
            _positive_float,
            lambda: 10.0,
        ),
        Setting(
            "kata_seed",
            "seed for schedule noise; a failure prints the seed that replays it "
            "(default: a new random seed each run)",
            int,
            lambda: None,
            ini=False,
        ),
        Setting(
            "kata_noise",
            "schedule noise in stress tests: on (the default) or off, to compare with plain "
            "repetition",
            _on_off,
            lambda: True,
        ),
        Setting(
            "kata_trace",
            "record what the learner's code does and judge it from the trace (races, "
            "contracts, deadlocks): on (the default) or off, to compare with the outcome alone",
            _on_off,
            lambda: True,
        ),
        Setting(
            "kata_scheduler",
            "who decides the interleaving in stress tests: controlled (the default: one "
            "thread or process runs at a time, at points the plugin chooses, so a schedule "
            "replays exactly) or noise (the OS decides, nudged by seeded random pauses)",
            _choice("controlled", "noise"),
            lambda: "controlled",
        ),
        Setting(
            "kata_explore",
            "how the controlled scheduler picks schedules: dfs (every schedule with at most "
            "--kata-preemptions preemptions), pct (probabilistic concurrency testing) or "
            "random (a seeded walk); default: the kata's choice, else dfs",
            _choice("dfs", "pct", "random"),
            lambda: "dfs",
        ),
        Setting(
            "kata_preemptions",
            "the bound of the dfs search: schedules with at most this many preemptions (default 2)",
            _positive_int,
            lambda: 2,
        ),
        Setting(
            "kata_schedule",
            "replay one schedule exactly: the token a failure printed",
            _schedule_token,
            lambda: None,
            ini=False,
        ),
        Setting(
            "kata_stress_budget",
            "seconds each stress test may spend repeating its scenario (default 2)",
            _positive_float,
            lambda: 2.0,
        ),
        Setting(
            "kata_report",
            "write a JSON report of every kata test, with scores, to this path",
            str,
            lambda: None,
        ),
        Setting(
            "kata_report_format",
            "the report's shape: exercism (test-runner v3 with scores, the default) or "
            "classroom (GitHub Classroom's autograding reporter)",
            str,
            lambda: "exercism",
        ),
        Setting(
            "kata_hint",
            "show the next hint for this task number of the kata given, then exit",
            _positive_int,
            lambda: None,
            ini=False,
        ),
        Setting(
            "kata_max_processes",
            "processes a test may have alive at once before it is stopped (default 200)",
            _positive_int,
            lambda: 200,
        ),
        Setting(
            "kata_max_memory",
            "resident memory all of a test's processes may use together (default 2GiB)",
            parse_size,
            lambda: 2 << 30,
        ),
        Setting(
            "kata_max_output",
            "bytes a test may print, summed over its processes (default 1MiB)",
            parse_size,
            lambda: 1 << 20,
        ),
    )
}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("katas", "concurrency katas")
    for setting in SETTINGS.values():
        group.addoption(setting.option, dest=setting.dest, default=None, help=setting.help)
        if setting.ini:
            parser.addini(setting.name, setting.help, default=None)


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    try:
        return setting.parse(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(f"{where}: {raw!r} is not valid: {exc}") from None


def resolve(
    config: pytest.Config,
    name: str,
    marker: pytest.Mark | None = None,
    kata_value: Any = None,
) -> Any:
    """The value of setting ``name`` for one test, or for the run when no marker is given."""
    setting = SETTINGS[name]
    if marker is not None and marker.args:
        return _parse(setting, marker.args[0], f"@pytest.mark.{name}")
    cli = config.getoption(setting.dest)
    if cli is not None:
        return _parse(setting, cli, setting.option)
    env = os.environ.get(setting.env)
    if env:
        return _parse(setting, env, f"${setting.env}")
    if kata_value is not None:
        return _parse(setting, kata_value, f"kata.toml {name.removeprefix('kata_')}")
    if setting.ini:
        ini = config.getini(name)
        if ini not in (None, ""):
            return _parse(setting, ini, f"ini {name}")
    return setting.default()
