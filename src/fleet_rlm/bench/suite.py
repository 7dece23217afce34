"""Benchmark suites: a grid of NIAH sizes x depths and OOLONG sizes x question kinds.

Why an iterator underneath: the full suite holds many 8M-character contexts; runners can
stream ``iter_suite`` and keep one task alive at a time, while ``make_suite`` returns a list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fleet_rlm.bench.niah import make_niah
from fleet_rlm.bench.oolong import QUESTION_KINDS, make_oolong_tasks
from fleet_rlm.bench.tasks import Task

K, M = 1_000, 1_000_000
SMALL = {  # minutes on 2 cores with a 1.5B model: the sizes the claims are about, few depths
    "niah_sizes": (32 * K, 128 * K, 1 * M),
    "depths": (0.25, 0.75),
    "oolong_sizes": (32 * K, 128 * K),
    "seeds": (0,),
    "question_kinds": ("most_frequent", "label_count"),
}
FULL = {
    "niah_sizes": (32 * K, 128 * K, 1 * M, 8 * M),
    "depths": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "oolong_sizes": (32 * K, 128 * K, 1 * M),
    "seeds": (0, 1),
}


def iter_suite(
    niah_sizes: Sequence[int] = SMALL["niah_sizes"],
    depths: Sequence[float] = SMALL["depths"],
    oolong_sizes: Sequence[int] = SMALL["oolong_sizes"],
    seeds: Sequence[int] = (0,),
    question_kinds: Sequence[str] = QUESTION_KINDS,
) -> Iterator[Task]:
    """Yield NIAH tasks (size x depth x seed), then OOLONG tasks (size x seed x kind)."""
    for n in niah_sizes:
        for seed in seeds:
            for depth in depths:
                yield make_niah(n, depth, seed)
    for n in oolong_sizes:
        for seed in seeds:
            yield from make_oolong_tasks(n, seed, question_kinds)


def make_suite(
    niah_sizes: Sequence[int] = SMALL["niah_sizes"],
    depths: Sequence[float] = SMALL["depths"],
    oolong_sizes: Sequence[int] = SMALL["oolong_sizes"],
    seeds: Sequence[int] = (0,),
    question_kinds: Sequence[str] = QUESTION_KINDS,
) -> list[Task]:
    """The same grid as :func:`iter_suite`, as a list."""
    return list(iter_suite(niah_sizes, depths, oolong_sizes, seeds, question_kinds))


def small_suite() -> list[Task]:
    """Quick check: 6 NIAH (32K, 128K, 1M) + 4 OOLONG (32K, 128K) tasks."""
    return make_suite(**SMALL)


def full_suite() -> Iterator[Task]:
    """The reference grid (88 NIAH + 30 OOLONG tasks, up to 8M characters), streamed."""
    return iter_suite(**FULL)
