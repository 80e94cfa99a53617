"""The pytest entry point: options, markers, the ``kata`` fixture, and running kata tests
under the supervisor."""

from __future__ import annotations

import random
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

import pytest

from pytest_katas import (
    board,
    catalog,
    channel,
    commands,
    feedback,
    findings,
    grading,
    hookspecs,
    kata_coverage,
    messages,
    report,
    sandbox,
    session,
    settings,
    stress,
    supervise,
)
from pytest_katas.channel import RunDir
from pytest_katas.loader import KataTarget
from pytest_katas.verdict import Kind, Outcome

__all__ = ["KataTestFailed"]

MARKERS = (
    "kata_timeout(seconds): fail the test as a hang after this many seconds",
    "kata_task(id): the kata task (from kata.toml) this test belongs to",
    "task(taskno): Exercism's spelling of kata_task",
    "kata_stress_budget(seconds): how long this test's stress loop may run",
    "kata_stress: added by the plugin to every test that uses the kata_stress fixture",
    "kata_explore(strategy): this test's default exploration strategy (dfs, pct, random)",
    "kata_preemptions(n): this test's default bound of the dfs search",
)
_SEED = pytest.StashKey[int]()


class KataTestFailed(Exception):
    """Carries a sandboxed test's outcome from the supervisor to the report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.add_options(parser)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark stress tests, so ``-m kata_stress`` selects them (the soak runs only those)."""
    for item in items:
        if "kata_stress" in getattr(item, "fixturenames", ()):
            item.add_marker("kata_stress")


def _check_kata_args(config: pytest.Config) -> None:
    """``pytest katas/nosuch`` names the katas there are, not just 'not found'."""
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        if path.exists():
            continue
        parent = path.parent
        if parent.is_dir() and any((d / catalog.KATA_MANIFEST).is_file() for d in parent.iterdir()):
            names = ", ".join(catalog.kata_names(parent))
            raise pytest.UsageError(
                f"there is no kata {path.name!r} in {arg.rsplit('/', 1)[0] or '.'}/. "
                f"The katas are: {names}. Run one with: pytest {parent.name}/<kata>"
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(session.RunChecks(config), "katas-checks")  # first: see there
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    settings.check_run(config)  # every setting resolved once: a bad value fails now
    messages.choose(config)  # the run's language, before any test runs or process starts
    _check_kata_args(config)
    _warn_of_junit_family(config)
    config.stash[_SEED] = _decide_seed(config)
    config.pluginmanager.register(report, "katas-report")
    config.pluginmanager.register(board, "katas-board")
    feedback.register(config)  # a hang's task stops there; each failure is shown once
    fmt = settings.of(config).report_format
    if fmt not in report.FORMATS and len(config.hook.pytest_kata_report.get_hookimpls()) == 1:
        raise pytest.UsageError(
            f"--kata-report-format={fmt}: there is no such format; use "
            f"{' or '.join(report.FORMATS)}, or install a plugin that adds one"
        )
    if not hasattr(config, "workerinput"):  # the controller grades; xdist workers only report
        grades = session.GradingSession(config, settings.of(config).report, fmt)
        config.pluginmanager.register(grades, "katas-grading")
        kata_coverage.register(config)  # last: a usage error above stops the run first


def _warn_of_junit_family(config: pytest.Config) -> None:
    """Each kata test's JUnit <properties> (its kata, task, failure class, seed) are outside
    the xunit2 schema, pytest's default junit_family: say so once, as pytest's own
    record_property does, and how to get a file that validates."""
    if not getattr(config.option, "xmlpath", None) or hasattr(config, "workerinput"):
        return
    if (config.getini("junit_family") or "xunit2") != "xunit2":
        return
    config.issue_config_time_warning(
        pytest.PytestWarning(
            "katas: each kata test's <properties> in --junitxml (kata, kata_task, "
            "kata_failure_class, kata_seed) are outside the xunit2 schema of junit_family "
            "= xunit2, pytest's default; set junit_family = xunit1 (or legacy) for a file "
            "that validates with them"
        ),
        stacklevel=2,
    )


_WORKER_SEED = "kata_seed"  # the key of the controller's seed in an xdist worker's input


def _decide_seed(config: pytest.Config) -> int:
    """One seed for the whole run: the option's, else a new one drawn by the controller.
    An xdist worker takes the controller's (handed over in pytest_configure_node), so that
    the header's seed is the one every replay command carries."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKER_SEED in workerinput:
        return int(workerinput[_WORKER_SEED])
    seed = settings.of(config).seed
    return seed if seed is not None else random.SystemRandom().randrange(1 << 32)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller: hand each worker the run's seed."""
    node.workerinput[_WORKER_SEED] = node.config.stash[_SEED]


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--kata-hint=N`` shows the next hint of task N, then exits without running tests."""
    if config.getoption("kata_hint") is None:
        return None
    config._do_configure()
    try:
        task_id = settings.of(config).hint
        assert task_id is not None  # given on the command line, checked at configure
        return _show_hint(config, task_id)
    finally:
        config._ensure_unconfigure()


def _show_hint(config: pytest.Config, task_id: int) -> int:
    from pytest_katas.messages import _  # the run's language is chosen: configure ran

    katas = {
        kata.name: kata
        for arg in config.args
        if (kata := catalog.find_kata(Path(config.invocation_params.dir, arg).resolve()))
    }
    if len(katas) != 1:
        raise pytest.UsageError(
            _("--kata-hint needs exactly one kata: pytest katas/<kata> --kata-hint=N")
        )
    (kata,) = katas.values()
    task = next((t for t in kata.tasks if t.id == task_id), None)
    if task is None:
        ids = ", ".join(str(t.id) for t in kata.tasks)
        raise pytest.UsageError(
            _("the {kata} kata has no task {task}; its tasks are {ids}").format(
                kata=kata.name, task=task_id, ids=ids
            )
        )
    from pytest_katas import commands, progress  # the same place as `katas hint` keeps

    store = progress.HintStore(kata.root)
    try:
        (index,) = store.step(kata.name, task.id, len(task.hints))
    except OSError as exc:  # a read-only checkout: show the first hint, keep no place
        index = 0
        kept = _("(your place in the hints cannot be kept: {error})").format(error=exc)
        config.get_terminal_writer().line(kept)
    writer = config.get_terminal_writer()
    head = _("{kata}, task {task}: {title}")
    writer.line(head.format(kata=kata.name, task=task.id, title=_(task.title)), bold=True)
    line = _("hint {number} of {count}: {hint}")
    hint = _(task.hints[index])
    writer.line(line.format(number=index + 1, count=len(task.hints), hint=hint))
    if index + 1 < len(task.hints):
        writer.line(_("(run the same command again for the next hint)"))
    else:
        reference = f"solutions/{kata.name}/{kata.name}.py"
        writer.line(_("(that was the last hint; the reference is {path})").format(path=reference))
    again = commands.katas_command("hint", kata.name, str(task.id), "--reset")
    place = _("(your place is kept in {path}; start over with: {command})")
    writer.line(place.format(path=store.shown_path, command=again))
    return 0


def pytest_unconfigure(config: pytest.Config) -> None:
    supervise.close_watchdog()


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.stash[_SEED]
    run = settings.of(config)
    method = run.start_method
    return f"katas: target {run.target}, start method {method}, seed {seed} (--kata-seed={seed})"


def _target(request: pytest.FixtureRequest) -> KataTarget:
    __tracebackhide__ = True
    try:
        kata = catalog.find_kata(Path(request.node.path))
        if kata is None:
            pytest.fail(
                f"{request.node.path} is not inside a kata: the kata fixture needs a "
                f"{catalog.KATA_MANIFEST} in the test's folder",
                pytrace=False,
            )
        target = settings.of(request.config).target
        return KataTarget(kata, catalog.resolve_target(kata, target))
    except catalog.KataError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def kata(request: pytest.FixtureRequest) -> KataTarget:
    """The implementation under test (the learner's file, or --kata-target's).

    Use its functions as attributes: ``kata.relay([1, 2])``. It is imported on first use,
    inside the test's sandbox.
    """
    return _target(request)


@pytest.fixture
def kata_start_method(request: pytest.FixtureRequest) -> str:
    """The multiprocessing start method learner code runs under in this test."""
    return settings.of(request.config).start_method


def _replay_command(item: pytest.Item) -> list[str]:
    run = settings.of(item.config)
    return [
        *commands.argv("pytest"),  # as this environment's pytest is called from here
        item.nodeid,
        f"--kata-seed={item.config.stash[_SEED]}",
        f"--kata-start-method={run.start_method}",
        f"--kata-target={run.target}",
        *([] if run.noise else ["--kata-noise=off"]),
        *([] if run.trace else ["--kata-trace=off"]),
        *(["--kata-scheduler=noise"] if run.scheduler == "noise" else []),
    ]


@pytest.fixture
def kata_stress(request: pytest.FixtureRequest) -> stress.Stress:
    """Repeats a scenario under seeded schedule noise until it breaks or the budget ends.

    ``kata_stress.run(scenario, check)``: see :class:`pytest_katas.stress.Stress`.
    """
    item = request.node
    run = settings.of(request.config)
    seed = request.config.stash[_SEED]
    target = _target(request)
    tracing = run.trace

    def audit() -> findings.Finding | None:  # called in the test's sandbox, not here
        rundir = RunDir.current()
        if rundir is None or not tracing:
            return None
        return findings.audit(rundir, channel.learner_files(), target.kata.relpath)

    exploration = stress.Exploration(
        scheduler=run.scheduler,
        strategy=run.explore_for(item),
        bound=run.preemptions_for(item),
        token=run.schedule,
        deadline=_limits(item, target).timeout,
    )
    budget = run.stress_budget_for(item)
    return stress.Stress(
        budget, seed, item.nodeid, _replay_command(item), run.noise, audit, exploration
    )


def _limits(item: pytest.Function, target: KataTarget) -> supervise.Limits:
    run = settings.of(item.config)
    timeout = run.timeout_for(item, target.kata.timeout)
    theirs = item.stash.get(_PYTEST_TIMEOUT, None)
    return supervise.Limits(
        timeout=min(timeout, theirs) if theirs is not None else timeout,
        max_processes=run.max_processes,
        max_memory=run.max_memory,
        max_output=run.max_output,
        by_pytest_timeout=theirs is not None and theirs < timeout,
    )


_PYTEST_TIMEOUT = pytest.StashKey[float]()


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout, for a kata test: its deadline is kept by the supervisor, whatever
    the method. Its thread method would end the whole run with os._exit (no report, no
    board), its signal method would interrupt the supervisor itself; so the earlier of its
    deadline and the kata's is the test's, and a test stopped by it is a HANG with stacks
    like any other. Other tests are left to pytest-timeout."""
    if sandbox.INSIDE or "kata" not in getattr(item, "fixturenames", ()):
        return None
    item.stash[_PYTEST_TIMEOUT] = float(settings.timeout)
    return True


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    return True if _PYTEST_TIMEOUT in item.stash else None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    target = pyfuncitem.funcargs.get("kata")
    if sandbox.INSIDE or not isinstance(target, KataTarget):
        return None  # not a kata test (or already in its sandbox): pytest runs it as usual
    __tracebackhide__ = True
    spec = sandbox.SandboxSpec(
        target=target,
        start_method=settings.of(pyfuncitem.config).start_method,
        rundir=RunDir.create(),
        replay=_replay_command(pyfuncitem),
        tracing=settings.of(pyfuncitem.config).trace,
        test_name=pyfuncitem.name,
    )
    outcome = supervise.supervise(pyfuncitem, spec, _limits(pyfuncitem, target))
    pyfuncitem.stash[_OUTCOME] = outcome
    if outcome.status == "passed":
        return True
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    raise KataTestFailed(outcome)


_OUTCOME = pytest.StashKey[Outcome]()
_META = pytest.StashKey[dict[str, Any]]()


def _meta(item: pytest.Item) -> dict[str, Any] | None:
    """Grading facts about a test in a kata folder (computed once per test)."""
    if _META not in item.stash:
        kata = catalog.find_kata(Path(item.path))
        item.stash[_META] = grading.test_meta(item, kata) if kata is not None else {}
    return item.stash[_META] or None


# Our JUnit <property> names: set once per attempt, however often a test runs.
_PROPERTIES: Final = ("kata", "kata_task", "kata_failure_class", "kata_seed", "kata_explored")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A rerun (pytest-rerunfailures) starts here again: what the last attempt found goes.
    item.user_properties[:] = [p for p in item.user_properties if p[0] not in _PROPERTIES]
    meta = _meta(item)
    if meta is not None:  # shown by --junitxml as <property> elements
        item.user_properties.append(("kata", Path(meta["kata_dir"]).name))
        item.user_properties.append(("kata_task", meta["task"]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    result = yield
    report: pytest.TestReport = result.get_result()
    meta = _meta(item)
    if meta is not None:
        report.kata_meta = meta  # type: ignore[attr-defined]
    outcome = item.stash.get(_OUTCOME, None)
    if call.when != "call" or outcome is None:
        return
    report.kata_outcome = outcome.to_json()  # type: ignore[attr-defined]
    if call.excinfo is not None and isinstance(call.excinfo.value, KataTestFailed):
        report.longrepr = outcome.text()
    # --junitxml writes the properties of the teardown report, which copies the item's.
    if outcome.kind is not None:
        item.user_properties.append(("kata_failure_class", outcome.kind.name.lower()))
    if outcome.seed is not None:
        item.user_properties.append(("kata_seed", outcome.seed))
    if outcome.explored:  # shown by -rA, and kept in the JUnit XML
        report.sections.append(("kata schedules", "\n".join(outcome.explored)))
        item.user_properties.append(("kata_explored", "; ".join(outcome.explored)))


@pytest.hookimpl(trylast=True)
def pytest_kata_classify(report: pytest.TestReport, outcome: dict[str, Any] | None) -> Kind | None:
    """The built-in classes: the supervisor's verdict; a test stopped by pytest-timeout
    (whose deadline came before ours) is a HANG; else a plain assertion is WRONG."""
    if outcome is not None and outcome.get("kind"):
        return Kind[str(outcome["kind"]).upper()]
    if report.when == "call":
        text = report.longreprtext
        if "Timeout (>" in text and "pytest-timeout" in text:
            return Kind.HANG
        return Kind.WRONG
    return None
