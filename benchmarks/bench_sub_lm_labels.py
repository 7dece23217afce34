"""Can this LM do the labelling pass that aggregation needs, and how long would it take?

Run: `uv run --extra local python benchmarks/bench_sub_lm_labels.py` (about 3 minutes on 2
cores with the local model), or `--lm openai/gpt-4o-mini` for any other LM.

Why: an OOLONG-style question ("which label is most common?") is answered by an RLM that
labels every record with `llm_query`/`llm_query_batched` and counts in code. No planner can
do better than its sub-LM's labels, so this measures that ceiling directly: accuracy on
records whose labels are known by construction, asked one record per call and 20 per call,
with a prompt that defines every label, and the seconds one full pass over a context of a
given size would take at the measured speed. Last, it labels every record of a 32K context
(20 per call) and counts, which is what the best RLM plan would do, and compares the counts
and the most frequent label with the truth.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter

from fleet_rlm.bench.oolong import LABELS, make_oolong
from fleet_rlm.bench.tasks import score_label
from fleet_rlm.config import load_settings
from fleet_rlm.lm import make_lms

DEFINITIONS = (
    "Label a question by the kind of answer it asks for:\n"
    "- abbreviation: the expansion or the short form of an abbreviation\n"
    "- entity: a thing, such as an animal, plant, food, color, sport, instrument or breed\n"
    "- description: an explanation, a definition, a reason or a way of doing something\n"
    "- human being: a person or a group of people\n"
    "- location: a place, such as a city, a country or a river\n"
    "- numeric value: a number, such as a count, a date, a size, a distance, a price or an age"
)


def _label(text: str) -> str | None:
    """The label a reply names, by the benchmark's own grading rule (`score_label`)."""
    found = [lab for lab in LABELS if score_label(lab, text, LABELS)]
    return found[0] if len(found) == 1 else None


def one_per_call(lm, questions: list[str]) -> list[str | None]:
    prompt = DEFINITIONS + "\n\nReply with the label only.\n\nQuestion: {}"
    return [_label(lm(prompt.format(q))[0]) for q in questions]


def many_per_call(lm, questions: list[str], size: int = 20) -> list[str | None]:
    out: list[str | None] = []
    for start in range(0, len(questions), size):
        chunk = questions[start : start + size]
        numbered = "\n".join(f"{k}. {q}" for k, q in enumerate(chunk, 1))
        reply = lm(
            f"{DEFINITIONS}\n\nReply with one line per question, `number. label`, "
            f"and nothing else.\n\n{numbered}"
        )[0]
        got: dict[int, str | None] = {}
        for line in reply.splitlines():
            m = re.match(r"\s*(\d+)\s*[.):-]\s*(.+)", line)
            if m:
                got.setdefault(int(m.group(1)), _label(m.group(2)))
        out.extend(got.get(k) for k in range(1, len(chunk) + 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm", default="local", help="'local' or a LiteLLM model name")
    parser.add_argument("--n", type=int, default=60, help="records to label")
    args = parser.parse_args()
    planner, sub = make_lms(load_settings(), args.lm)
    lm = sub or planner  # llm_query goes to the sub-LM when one is configured

    task = make_oolong(32_000, "most_frequent", seed=0)
    records = task.context.split("\n\n", 1)[1].split("\n")
    picks = random.Random(0).sample(range(len(records)), args.n)
    questions = [records[i].split("Instance: ", 1)[1] for i in picks]
    gold = [task.meta["labels"][i] for i in picks]
    lm("Say hi.")  # warm the weights and the prefix cache

    print(f"model: {lm.model}; {args.n} records, 6 labels (chance: 17%)")
    for name, run in (("1 per call", one_per_call), ("20 per call", many_per_call)):
        t0 = time.perf_counter()
        got = run(lm, questions)
        per_item = (time.perf_counter() - t0) / len(questions)
        right = sum(g == p for g, p in zip(gold, got, strict=True))
        full_pass = ", ".join(
            f"{size // 1000}K chars ({n:,} records) {n * per_item / 60:.1f} min"
            for size, n in ((32_000, len(records)), (128_000, len(records) * 4))
        )
        print(
            f"{name:>11}: {right}/{len(gold)} right ({right / len(gold):.0%}), "
            f"{per_item:.2f} s per record; one pass: {full_pass}"
        )

    t0 = time.perf_counter()
    every = many_per_call(lm, [r.split("Instance: ", 1)[1] for r in records])
    seconds = time.perf_counter() - t0
    truth, counted = Counter(task.meta["labels"]), Counter(lab for lab in every if lab)
    right = sum(g == p for g, p in zip(task.meta["labels"], every, strict=True))
    print(
        f"every record of 32K ({len(records)}), 20 per call: {seconds:.0f} s, "
        f"{right / len(records):.0%} right, {every.count(None)} unparsed"
    )
    print("label counts, true vs counted from the LM's labels:")
    for lab in LABELS:
        print(f"  {lab:>14}: {truth[lab]:4d} vs {counted[lab]:4d}")
    top, guess = task.gold, max(LABELS, key=counted.__getitem__)
    verdict = "right" if top == guess else "wrong"
    print(f"most frequent: true {top!r}, counted {guess!r} ({verdict})")


if __name__ == "__main__":
    main()
