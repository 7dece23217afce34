"""Benchmark task type and scorers.

Why one tiny module: generators (``niah``, ``oolong``) and runners both need the task
shape and the scoring rules, and neither should import the other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

NUMERIC_DECAY = 0.75
"""OOLONG's partial credit: a numeric answer off by ``d`` scores ``0.75 ** d``."""

SHORT_ANSWER_WORDS = 12
"""A label answer longer than this must match exactly; shorter ones may just contain it."""


@dataclass(frozen=True)
class Task:
    """One benchmark item.

    ``context`` and ``meta`` are left out of ``repr`` because contexts reach 8M characters.
    ``meta`` holds the generator's hidden record (labels, needle offset, ...): it is for
    scoring and analysis only and must never be shown to the model.
    """

    task_id: str
    kind: str  # "niah" | "oolong"
    context: str = field(repr=False)
    question: str
    gold: str | int
    meta: dict = field(default_factory=dict, repr=False)


_INT_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?!\d)|-?\d+")
_PREFIX_RE = re.compile(r"^(?:final\s+)?(?:answer|label)\s*[:=]\s*")
_STRIP = " \t\r\n\"'`\u2018\u2019\u201c\u201d*"


def parse_first_int(text: str) -> int | None:
    """First integer in ``text`` (``1,234`` counts as one number); ``None`` if there is none."""
    m = _INT_RE.search(text)
    return int(m.group().replace(",", "")) if m else None


def normalise_label(text: str) -> str:
    """Lower-case, collapse whitespace, drop quotes, a trailing period and an ``Answer:``."""
    s = " ".join(text.lower().split()).strip(_STRIP)
    s = _PREFIX_RE.sub("", s).strip(_STRIP)
    if s.endswith("."):
        s = s[:-1]
    return s.strip(_STRIP)


def _has_word(haystack: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", haystack) is not None


def score_substring(gold: str, prediction: str) -> float:
    """RULER's ``string_match``: full credit iff the gold string occurs in the answer."""
    return 1.0 if str(gold) in prediction else 0.0


def score_numeric(gold: int, prediction: str) -> float:
    """OOLONG numeric credit ``0.75 ** |gold - pred|`` on the first integer; 0 if none."""
    pred = parse_first_int(prediction)
    if pred is None:
        return 0.0
    return NUMERIC_DECAY ** abs(gold - pred)


def score_label(gold: str, prediction: str, labels: Sequence[str] = ()) -> float:
    """Exact match after normalisation, or a short answer naming the gold label as a whole
    phrase and no other label (so hedges like "entity or location" score 0)."""
    g, p = normalise_label(gold), normalise_label(prediction)
    if p == g:
        return 1.0
    if len(p.split()) > SHORT_ANSWER_WORDS or not _has_word(p, g):
        return 0.0
    others = (normalise_label(lab) for lab in labels if normalise_label(lab) != g)
    return 0.0 if any(_has_word(p, o) for o in others) else 1.0


def score(task: Task, prediction: str) -> float:
    """Score ``prediction`` for ``task`` in [0, 1] using the task kind's rule."""
    prediction = "" if prediction is None else str(prediction)
    if task.kind == "niah":
        return score_substring(str(task.gold), prediction)
    if isinstance(task.gold, int):
        return score_numeric(task.gold, prediction)
    return score_label(task.gold, prediction, task.meta.get("label_set", ()))
