"""The end-to-end benchmark's plumbing, with a scripted LM (no model): scoring, failures, files."""

from __future__ import annotations

import json

from fleet_rlm.bench import make_niah
from fleet_rlm.bench.run import run_benchmark, run_one, summarize, write_results
from fleet_rlm.testing import ScriptedLM

SOLVE = [
    "import re\nkey = re.search(r'number for (\\S+) mentioned', question).group(1)\n"
    "m = re.search(r'magic numbers for ' + re.escape(key) + r' is: (\\d+)', context)\n"
    "print(m.group(1))",
    "SUBMIT(answer=m.group(1))",
]


def test_rlm_finds_the_needle_and_direct_is_scored_on_its_answer():
    task = make_niah(32_000, 0.5, seed=3)
    rlm = run_one(task, "rlm", ScriptedLM(SOLVE))
    assert rlm.score == 1.0 and rlm.failure is None and rlm.prediction == str(task.gold)
    assert rlm.iterations == 2 and rlm.lm_calls == 2 and rlm.prompt_tokens > 0
    direct = run_one(task, "direct", ScriptedLM(final={"answer": "1234567"}))
    assert direct.score == 0.0 and direct.failure == "wrong" and direct.lm_calls == 1


def test_failures_are_results_not_crashes(monkeypatch):
    task = make_niah(32_000, 0.1, seed=4)
    broken = ScriptedLM(["SUBMIT(answer=1/0)"] * 3)  # never succeeds, no extract fallback
    outcome = run_one(task, "rlm", broken, max_iterations=3)
    assert outcome.score == 0.0 and outcome.failure == "lm_error"
    monkeypatch.setattr("fleet_rlm.bench.peers.deno_available", lambda: False)
    assert run_one(task, "dspy-rlm", broken).failure == "unavailable"


def test_summary_and_files(tmp_path):
    tasks = [make_niah(32_000, d, seed=5) for d in (0.0, 1.0)]
    outcomes = run_benchmark(tasks, ["rlm"], ScriptedLM(SOLVE * 2))
    rows = summarize(outcomes)
    assert rows == [rows[0]] and rows[0]["size"] == "32K" and rows[0]["score"] == 1.0
    assert rows[0]["n"] == 2 and rows[0]["s_per_step"] is not None
    paths = write_results(outcomes, tmp_path, {"model": "scripted", "command": "test"})
    data = json.loads(paths["json"].read_text())
    assert len(data["outcomes"]) == 2 and data["summary"][0]["method"] == "rlm"
    assert "| niah | 32K | rlm | 2 | 1.00 |" in paths["markdown"].read_text()
