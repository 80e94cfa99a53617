"""Every option, ini key and environment variable of the plugin, resolved in one place.

Precedence, highest first: a test's marker, the command line, the PYTEST_KATA_* environment
variable, the kata's kata.toml, the ini file, the built-in default. A bad value fails with a
message that names the value, where it came from, and what to do. Every amount (seconds,
counts, sizes) must be a finite number above 0: ``inf``, ``nan``, 0, negatives, and (from a
marker) a string or a bool are refused wherever they come from.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import re
from collections.abc import Callable
from typing import Any, Final, final

import pytest

from pytest_katas.catalog import amount_problem, bad_amount, show_value
from pytest_katas.messages import from_locale, parse_language

__all__ = [
    "SETTINGS",
    "Setting",
    "Settings",
    "add_options",
    "check_marker",
    "check_run",
    "load",
    "of",
    "parse_size",
    "report_target",
]


@final
@dataclasses.dataclass(frozen=True)
class _Amount:
    """Parses an amount given as text (option, environment, ini): finite and above 0."""

    what: str  # "a number of seconds": what the value must be, in the user's words
    example: str
    whole: bool = False

    def __call__(self, text: str) -> Any:
        try:
            value: float = int(text) if self.whole else float(text)
        except ValueError:
            raise ValueError(f"must be {self.what} above 0, e.g. {self.example}") from None
        if math.isnan(value):
            raise ValueError(f"must be {self.what} above 0, e.g. {self.example}")
        if value <= 0:
            raise ValueError("must be more than 0")
        if math.isinf(value):
            raise ValueError(
                "must be finite: a limit of inf never ends, so a hanging test would hang "
                f"the whole run; use e.g. {self.example}"
            )
        return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number from 0 up, e.g. 1234") from None
    if value < 0:
        raise ValueError("must be a whole number from 0 up, e.g. 1234")
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
    if int(number * scale) < 1:
        raise ValueError("must be at least 1 byte, e.g. 512MiB")
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
    flag: bool = False  # the option takes no value: giving it means "on"

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
            _Amount("a number of seconds", "10"),
            lambda: 10.0,
        ),
        Setting(
            "kata_seed",
            "seed for schedule noise; a failure prints the seed that replays it "
            "(default: a new random seed each run)",
            _seed,
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
            _Amount("a whole number of preemptions", "2", whole=True),
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
            _Amount("a number of seconds", "2"),
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
            _Amount("a task number", "1", whole=True),
            lambda: None,
            ini=False,
        ),
        Setting(
            "kata_lang",
            "the language of hints, the board and failure messages: en or zh-CN (default: "
            "zh-CN when the locale (LC_ALL, LC_MESSAGES, LANG) is Chinese, else en)",
            parse_language,
            from_locale,
        ),
        Setting(
            "kata_keep_going",
            "run every test of a task even after one of them hung or did not import (by "
            "default the task's other tests are not run then, so a hang costs one deadline; "
            "ini and $PYTEST_KATA_KEEP_GOING take on or off)",
            _on_off,
            lambda: False,
            flag=True,
        ),
        Setting(
            "kata_coverage",
            "after the run, show the lines of your kata file that no test was seen to run "
            "(Python 3.12 or later; ini and $PYTEST_KATA_COVERAGE take on or off)",
            _on_off,
            lambda: False,
            flag=True,
        ),
        Setting(
            "kata_max_processes",
            "processes a test may have alive at once before it is stopped (default 200)",
            _Amount("a whole number of processes", "200", whole=True),
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
        how: dict[str, Any] = {"action": "store_const", "const": "on"} if setting.flag else {}
        group.addoption(setting.option, dest=setting.dest, default=None, help=setting.help, **how)
        if setting.ini:
            parser.addini(setting.name, setting.help, default=None)


def _amount_of(setting: Setting) -> _Amount | None:
    return setting.parse if isinstance(setting.parse, _Amount) else None


def _parse(setting: Setting, raw: Any, where: str) -> Any:
    """A value given as text (option, environment, ini): ``<where>: 'raw' is not valid: ...``."""
    try:
        return setting.parse(str(raw))
    except ValueError as exc:
        raise pytest.UsageError(f"{where}: {raw!r} is not valid: {exc}") from None


def _parse_typed(setting: Setting, raw: Any, subject: str, example: str) -> Any:
    """A value given as a Python or TOML value (a marker, kata.toml): an amount must be a
    finite number above 0, never a string or a bool. ``subject`` is the value as written."""
    amount = _amount_of(setting)
    if amount is not None:
        why = bad_amount(raw, whole=amount.whole)
        if why is not None:
            problem = amount_problem(subject, amount.what, example or amount.example, why)
            raise pytest.UsageError(problem)
        return int(raw) if amount.whole else float(raw)
    try:
        if not isinstance(raw, str):
            raise ValueError("it must be text, in quotes")
        return setting.parse(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{subject} is not valid: {exc}") from None


def check_marker(name: str, mark: pytest.Mark) -> str | None:
    """What is wrong with ``@pytest.mark.<name>(...)`` (the marker of a setting), or None."""
    amount = _amount_of(SETTINGS[name])
    example = f"@pytest.mark.{name}({amount.example if amount is not None else '...'})"
    if not mark.args:
        return f"@pytest.mark.{name} has no value; give it one, e.g. {example}"
    subject = f"@pytest.mark.{name}({mark.args[0]!r})"
    try:
        _parse_typed(SETTINGS[name], mark.args[0], subject, example)
    except pytest.UsageError as exc:
        return str(exc)
    return None


def _ini_where(config: pytest.Config, name: str) -> str:
    overrides = getattr(config.option, "override_ini", None) or ()
    if any(str(o).split("=", 1)[0].strip() == name for o in overrides):
        return f"-o {name}"
    if config.inipath is not None:
        return f"{config.inipath.name}: {name}"
    return f"ini {name}"


def _resolve(
    config: pytest.Config,
    name: str,
    marker: pytest.Mark | None = None,
    kata_value: Any = None,
) -> tuple[Any, bool]:
    """The value of setting ``name``, and whether it was given on the command line or in the
    environment (which beats a kata's own value)."""
    setting = SETTINGS[name]
    if marker is not None and marker.args:
        problem = check_marker(name, marker)
        if problem is not None:
            raise pytest.UsageError(problem)
        return _parse_typed(setting, marker.args[0], "", ""), True
    cli = config.getoption(setting.dest)
    if cli is not None:
        return _parse(setting, cli, setting.option), True
    env = os.environ.get(setting.env)
    if env:
        return _parse(setting, env, f"${setting.env}"), True
    if kata_value is not None:
        subject = f"kata.toml: {name.removeprefix('kata_')} = {show_value(kata_value)}"
        return _parse_typed(setting, kata_value, subject, ""), False
    if setting.ini:
        ini = config.getini(name)
        if ini not in (None, ""):
            if isinstance(ini, str):
                return _parse(setting, ini, _ini_where(config, name)), False
            subject = f"{_ini_where(config, name)} = {show_value(ini)}"
            return _parse_typed(setting, ini, subject, ""), False
    return setting.default(), False


@final
@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of a run, resolved once (``load``), typed. A field is its setting's
    name without ``kata_``: ``kata_stress_budget`` is ``stress_budget``. The three that a
    test can change (a marker, or its kata's kata.toml) are read per test through
    ``timeout_for``, ``stress_budget_for`` and ``explore_for``."""

    target: str
    start_method: str
    timeout: float
    seed: int | None
    noise: bool
    trace: bool
    scheduler: str
    explore: str
    preemptions: int
    schedule: str | None
    stress_budget: float
    report: str | None
    report_format: str
    hint: int | None
    lang: str
    keep_going: bool
    coverage: bool
    max_processes: int
    max_memory: int
    max_output: int
    given: frozenset[str] = frozenset()  # the settings given by option or environment

    def timeout_for(self, item: pytest.Item, kata_timeout: float | None) -> float:
        """A test's deadline: its marker, else the option or environment, else its kata's
        kata.toml, else the ini file or 10 s."""
        marker = item.get_closest_marker("kata_timeout")
        return float(self._for_test("kata_timeout", marker, kata_timeout))

    def stress_budget_for(self, item: pytest.Item) -> float:
        marker = item.get_closest_marker("kata_stress_budget")
        return float(self._for_test("kata_stress_budget", marker, None))

    def explore_for(self, item: pytest.Item) -> str:
        """A kata's own choice (its ``kata_explore`` marker) is a default: the command line
        and the environment override it."""
        return str(self._kata_default("kata_explore", item))

    def preemptions_for(self, item: pytest.Item) -> int:
        """Like the strategy, a kata's own bound (its ``kata_preemptions`` marker) is a
        default that the command line and the environment override: a test whose every
        schedule costs processes can settle for a proof within a smaller bound."""
        return int(self._kata_default("kata_preemptions", item))

    def _kata_default(self, name: str, item: pytest.Item) -> Any:
        """A setting whose marker is the kata's default, not the last word."""
        marker = item.get_closest_marker(name)
        return self._for_test(name, None, marker.args[0] if marker else None)

    def _for_test(self, name: str, marker: pytest.Mark | None, kata_value: Any) -> Any:
        if marker is not None and marker.args:
            problem = check_marker(name, marker)
            if problem is not None:
                raise pytest.UsageError(problem)
            return _parse_typed(SETTINGS[name], marker.args[0], "", "")
        if kata_value is None or name in self.given:
            return getattr(self, _field(name))
        subject = f"kata.toml: {_field(name)} = {show_value(kata_value)}"
        return _parse_typed(SETTINGS[name], kata_value, subject, "")


def _field(name: str) -> str:
    return name.removeprefix("kata_")


_LOADED: Final = pytest.StashKey[Settings]()


def load(config: pytest.Config) -> Settings:
    """Resolve every setting of the run (options, environment, ini) once, and keep them on
    ``config``; a bad value is a UsageError naming the first bad one."""
    if _LOADED in config.stash:
        return config.stash[_LOADED]
    values: dict[str, Any] = {}
    given: set[str] = set()
    for name in SETTINGS:
        values[_field(name)], strong = _resolve(config, name)
        if strong:
            given.add(name)
    loaded = Settings(**values, given=frozenset(given))
    config.stash[_LOADED] = loaded
    return loaded


def of(config: pytest.Config) -> Settings:
    """The run's settings (resolved at configure; resolved now if they were not)."""
    return load(config)


def report_target(config: pytest.Config) -> tuple[str | None, str]:
    """Where the report goes and its format, even when another setting is bad (so that the
    report can say what is wrong); ``(None, "exercism")`` when these two are bad too."""
    try:
        run = of(config)
        return run.report, run.report_format
    except pytest.UsageError:
        pass
    try:
        return _resolve(config, "kata_report")[0], _resolve(config, "kata_report_format")[0]
    except pytest.UsageError:
        return None, "exercism"


def check_run(config: pytest.Config) -> None:
    """Every run-wide setting (options, environment, ini), checked at once: UsageError with
    the first bad one."""
    from pytest_katas.catalog import KataError, check_target_option

    loaded = load(config)
    try:
        check_target_option(loaded.target)
    except KataError as exc:
        raise pytest.UsageError(str(exc)) from None
