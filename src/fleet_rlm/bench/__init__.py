"""Synthetic long-context benchmarks (S-NIAH, OOLONG-style aggregation), generated offline.

Everything is stdlib-only and seeded: the same arguments always give the same bytes.
"""

from fleet_rlm.bench.niah import make_niah
from fleet_rlm.bench.oolong import LABELS, QUESTION_KINDS, make_oolong, make_oolong_tasks
from fleet_rlm.bench.suite import FULL, SMALL, full_suite, iter_suite, make_suite, small_suite
from fleet_rlm.bench.tasks import Task, score, score_label, score_numeric, score_substring

__all__ = [
    "FULL",
    "LABELS",
    "QUESTION_KINDS",
    "SMALL",
    "Task",
    "full_suite",
    "iter_suite",
    "make_niah",
    "make_oolong",
    "make_oolong_tasks",
    "make_suite",
    "score",
    "score_label",
    "score_numeric",
    "score_substring",
    "small_suite",
]
