"""Synthetic benchmark generators: determinism, placement, gold by construction, scoring."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from fleet_rlm.bench import (
    LABELS,
    QUESTION_KINDS,
    Task,
    make_niah,
    make_oolong,
    make_oolong_tasks,
    make_suite,
    score,
    score_label,
    score_numeric,
)
from fleet_rlm.bench.oolong import label_of

LINE_RE = re.compile(
    r"Date: (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d\d, \d{4}"
    r" \|\| User: (\d{5}) \|\| Instance: (.+)"
)


def _records(task: Task) -> list[tuple[int, str]]:
    header, blank, *lines = task.context.split("\n")
    assert blank == "" and header.startswith("The following lines")
    out = []
    for line in lines:
        m = LINE_RE.fullmatch(line)
        assert m, line
        out.append((int(m.group(1)), m.group(2)))
    return out


# ---------------------------------------------------------------- S-NIAH


def test_niah_deterministic_and_seed_sensitive():
    a, b = make_niah(32_000, 0.5, seed=7), make_niah(32_000, 0.5, seed=7)
    assert a == b and a.context.encode() == b.context.encode()
    c = make_niah(32_000, 0.5, seed=8)
    assert c.context != a.context and (c.meta["key"], c.gold) != (a.meta["key"], a.gold)


@pytest.mark.parametrize("n_chars", [32_000, 128_000, 1_000_000])
def test_niah_size_within_one_percent(n_chars):
    t = make_niah(n_chars, 0.3, seed=1)
    assert abs(len(t.context) - n_chars) <= 0.01 * n_chars
    assert len(t.context) <= n_chars


@pytest.mark.parametrize("depth", [0.0, 0.1, 0.25, 0.5, 0.77, 0.9, 1.0])
def test_niah_needle_once_at_depth(depth):
    t = make_niah(32_000, depth, seed=3)
    needle, ctx = t.meta["needle"], t.context
    assert needle == f"One of the special magic numbers for {t.meta['key']} is: {t.gold}."
    assert ctx.count(needle) == 1 and ctx.count("special magic number") == 1
    assert ctx.count(t.gold) == 1 and ctx.count(t.meta["key"]) == 1
    assert not re.search(r"\d{5,}", ctx.replace(needle, ""))  # no look-alike numbers
    off = ctx.index(needle)
    assert off == t.meta["needle_offset"]
    assert abs(off / (len(ctx) - len(needle)) - depth) < 0.01
    # sentence boundary on both sides
    assert off == 0 or ctx[off - 2 : off] in (". ", ".\n")
    assert ctx[off + len(needle) : off + len(needle) + 1] in (" ", "\n")
    assert re.fullmatch(r"\d{7}", t.gold)
    assert t.meta["key"] in t.question and t.question.startswith("What is the special magic")


def test_niah_filler_is_varied():
    lines = [s for s in re.split(r"(?<=\.)\s", make_niah(128_000, 0.5, 0).context) if s]
    assert len(set(lines)) > 0.9 * len(lines)


def test_niah_same_haystack_across_depths():
    a, b = make_niah(32_000, 0.2, 5), make_niah(32_000, 0.8, 5)
    assert a.context.replace(a.meta["needle"] + " ", "") == b.context.replace(
        b.meta["needle"] + " ", ""
    )


def test_niah_rejects_bad_depth():
    with pytest.raises(ValueError):
        make_niah(32_000, 1.5, 0)


def test_niah_8m_is_fast():
    t0 = time.perf_counter()
    t = make_niah(8_000_000, 0.5, seed=0)
    assert time.perf_counter() - t0 < 3.0
    assert abs(len(t.context) - 8_000_000) <= 80_000


def test_niah_scoring():
    t = make_niah(32_000, 0.5, 0)
    assert score(t, f"The special magic number is {t.gold}.") == 1.0
    assert score(t, t.gold) == 1.0
    assert score(t, "I could not find it.") == 0.0
    assert score(t, t.gold[:-1]) == 0.0
    assert score(t, None) == 0.0


# ---------------------------------------------------------------- OOLONG


def test_oolong_deterministic_and_seed_sensitive():
    a = make_oolong(32_000, "label_count", seed=2)
    b = make_oolong(32_000, "label_count", seed=2)
    assert a == b and a.context.encode() == b.context.encode()
    assert make_oolong(32_000, "label_count", seed=3).context != a.context


def test_oolong_context_shared_across_question_kinds():
    tasks = make_oolong_tasks(32_000, 4)
    assert [t.meta["question_kind"] for t in tasks] == list(QUESTION_KINDS)
    assert len({t.context for t in tasks}) == 1
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert make_oolong(32_000, "most_frequent", 4).context == tasks[0].context


@pytest.mark.parametrize("n_chars", [32_000, 128_000, 1_000_000])
def test_oolong_size_within_one_percent(n_chars):
    t = make_oolong(n_chars, "most_frequent", seed=0)
    assert abs(len(t.context) - n_chars) <= 0.01 * n_chars


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_oolong_gold_by_construction(seed):
    tasks = {t.meta["question_kind"]: t for t in make_oolong_tasks(32_000, seed)}
    any_task = tasks["most_frequent"]
    recs = _records(any_task)
    hidden = any_task.meta["labels"]
    # independent totals: the header count, the parsed lines and the hidden record agree
    n_header = int(re.search(r"contain (\d+) records", any_task.context).group(1))
    assert n_header == len(recs) == len(hidden) == any_task.meta["n_records"]
    counts = Counter(hidden)
    assert sum(counts.values()) == len(recs) and set(counts) <= set(LABELS)
    assert counts == Counter(any_task.meta["label_counts"])
    # the label is recoverable from the text alone (template grammar), and matches the record
    assert [label_of(text) for _, text in recs] == list(hidden)

    ranked = counts.most_common()
    assert tasks["most_frequent"].gold == ranked[0][0] and ranked[0][1] > ranked[1][1]
    full = [counts[lab] for lab in LABELS]
    least = min(LABELS, key=lambda lab: counts[lab])
    assert tasks["least_frequent"].gold == least and sorted(full)[0] < sorted(full)[1]

    t = tasks["label_count"]
    assert t.gold == counts[t.meta["label"]] and f"'{t.meta['label']}'" in t.question

    t = tasks["user_label_count"]
    uid, lab = t.meta["user"], t.meta["label"]
    mine = sum(1 for (u, _), h in zip(recs, hidden, strict=True) if u == uid and h == lab)
    assert t.gold == mine >= 1 and str(uid) in t.question

    t = tasks["compare_labels"]
    a, b = t.meta["labels_compared"]
    assert counts[a] != counts[b]
    assert t.gold == (a if counts[a] > counts[b] else b)


def test_oolong_instances_never_name_their_label():
    t = make_oolong(128_000, "most_frequent", seed=1)
    for (_, text), lab in zip(_records(t), t.meta["labels"], strict=True):
        assert not re.search(rf"\b{re.escape(lab)}\b", text, re.IGNORECASE), text


def test_oolong_unknown_kind():
    with pytest.raises(ValueError):
        make_oolong(32_000, "median_label", 0)


def test_oolong_8m_is_fast():
    t0 = time.perf_counter()
    t = make_oolong(8_000_000, "label_count", seed=0)
    assert time.perf_counter() - t0 < 3.0
    assert abs(len(t.context) - 8_000_000) <= 80_000


# ---------------------------------------------------------------- scoring


def _task(gold: str | int) -> Task:
    return Task("t", "oolong", "", "q", gold, {"label_set": LABELS})


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ("10", 1.0),
        ("The answer is 10.", 1.0),
        ("11", 0.75),
        ("8 instances", 0.5625),
        ("Answer: 13", 0.75**3),
        ("none found", 0.0),
        ("", 0.0),
        ("10 or maybe 11", 1.0),  # first integer wins
    ],
)
def test_numeric_score(pred, expected):
    assert score(_task(10), pred) == pytest.approx(expected)


def test_numeric_score_thousands_separator():
    assert score_numeric(1234, "There are 1,234 of them.") == 1.0
    assert score_numeric(1234, "1234") == 1.0


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ("numeric value", 1.0),
        ("  Numeric Value. ", 1.0),
        ("'numeric value'", 1.0),
        ('"Numeric value"', 1.0),
        ("Label: numeric value", 1.0),
        ("**numeric value**", 1.0),
        ("The most common label is numeric value.", 1.0),
        ("numeric", 0.0),
        ("numeric value or location", 0.0),  # hedging between labels
        ("location", 0.0),
        ("", 0.0),
        (
            "After carefully counting every line of the data set I believe that overall the "
            "answer would be numeric value",
            0.0,
        ),  # long answers must match exactly
    ],
)
def test_label_score(pred, expected):
    assert score(_task("numeric value"), pred) == expected


def test_label_score_whole_word_only():
    assert score_label("entity", "identity", LABELS) == 0.0
    assert score_label("entity", "entity", LABELS) == 1.0
    assert score_label("human being", "A human being.", LABELS) == 1.0


# ---------------------------------------------------------------- suite


def test_make_suite_grid():
    suite = make_suite(
        niah_sizes=(32_000,),
        depths=(0.0, 1.0),
        oolong_sizes=(32_000,),
        seeds=(0, 1),
        question_kinds=("most_frequent", "label_count"),
    )
    assert len(suite) == 2 * 2 + 2 * 2
    assert len({t.task_id for t in suite}) == len(suite)
    assert Counter(t.kind for t in suite) == {"niah": 4, "oolong": 4}
    for t in suite:
        assert score(t, str(t.gold)) == 1.0
    assert "context" not in repr(suite[0])
