"""The frontrun test that bench/explore.py writes beside each counter (as ``counter.py``).

Run through frontrun's command wrapper: ``frontrun pytest test_<case>.py``. The strategy,
the seed (random strategy only) and where to write the numbers come from the environment.
"""

from __future__ import annotations

import json
import os
import time

import frontrun
from counter import Counter

THREADS, PER_THREAD = 2, 2


def add_twice(counter: Counter) -> None:
    for _ in range(PER_THREAD):
        counter.increment()


def test_no_increment_is_lost() -> None:
    strategy = os.environ.get("BENCH_FRONTRUN_STRATEGY", "dpor")
    options: dict[str, object] = {}
    if strategy == "random":
        options["seed"] = int(os.environ.get("BENCH_SEED", "0"))
    started = time.perf_counter()
    result = frontrun.explore(
        setup=Counter,
        workers=add_twice,
        count=THREADS,
        invariant=lambda counter: counter.value == THREADS * PER_THREAD,
        strategy=strategy,
        **options,
    )
    seconds = time.perf_counter() - started
    numbers = {
        "seconds": seconds,
        "holds": result.property_holds,
        "explored": result.num_explored,
        "reproduced": result.reproduction_successes,
        "attempts": result.reproduction_attempts,
    }
    out = os.environ.get("BENCH_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(numbers, handle)
    result.assert_holds()
