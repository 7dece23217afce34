"""dspy.RLM with a scripted LM, end to end through the sandbox, on every backend."""

from __future__ import annotations

import threading
import time

from fleet_rlm.engine import run_rlm
from fleet_rlm.testing import ScriptedLM


def word_count(text: str) -> int:
    """Count the words in text."""
    return len(text.split())


def test_full_run_types_tools_errors_and_trajectory(options):
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def respond(prompt: str) -> str:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.2)
        with lock:
            in_flight[0] -= 1
        return prompt.upper()

    steps = [
        "print(len(context)); head = context[:11]; print(head)",
        "r = llm_query('summarize: ' + head); print(r)",
        "rs = llm_query_batched(['a', 'b', 'c', 'd']); print(rs)",
        "n = word_count(context[:100]); print(n)",
        "print(undefined_name)",  # an exception the model sees and fixes next
        "undefined_name = 1; print('fixed')",
        "SUBMIT(answer=r, count=n, items=rs, info={'head': head, 'fixed': undefined_name})",
    ]
    lm = ScriptedLM(steps, respond=respond)
    context = "hello world " * 1000
    result = run_rlm(
        "context -> answer: str, count: int, items: list[str], info: dict",
        {"context": context},
        lm=lm,
        tools=[word_count],
        sandbox=options,
    )
    out = result.outputs
    assert out == {
        "answer": "SUMMARIZE: HELLO WORLD",
        "count": 17,
        "items": ["A", "B", "C", "D"],
        "info": {"head": "hello world", "fixed": 1},
    }
    assert [type(out[k]) for k in ("answer", "count", "items", "info")] == [str, int, list, dict]
    assert peak[0] >= 2, "llm_query_batched prompts were not answered concurrently"

    steps_rec = result.steps
    assert [s["index"] for s in steps_rec] == list(range(1, 8))
    assert [s["code"] for s in steps_rec] == steps
    assert steps_rec[0]["output"].startswith("12000\nhello world")
    assert steps_rec[1]["sub_calls"][0]["tool"] == "llm_query"
    assert steps_rec[1]["sub_calls"][0]["response"] == "SUMMARIZE: HELLO WORLD"
    assert steps_rec[4]["error"] and "NameError" in steps_rec[4]["output"]
    assert steps_rec[5]["output"].strip() == "fixed" and not steps_rec[5]["error"]
    assert steps_rec[6]["output"].startswith("FINAL:")
    summary = result.summary
    assert summary["type"] == "result" and summary["error"] is None
    assert summary["iterations"] == 7 and summary["lm_calls"] == 7
    assert summary["sub_lm_calls"] == 5  # 1 llm_query + 4 batched
    # dspy's own trajectory agrees
    assert len(result.prediction.trajectory) == 7


def test_context_sent_once_over_ten_iterations(options):
    """dspy.RLM passes every input on every iteration; the sandbox must receive it once."""
    context = "x" * (50 * 1024 * 1024)
    steps = [f"print(len(context) + {i})" for i in range(9)] + ["SUBMIT(answer=str(len(context)))"]
    result = run_rlm(
        "context -> answer: str", {"context": context}, lm=ScriptedLM(steps), sandbox=options
    )
    assert result.outputs["answer"] == str(len(context))
    assert result.summary["iterations"] == 10
    sent = result.summary["bytes_to_sandbox"]
    assert sent < 1.1 * len(context), f"{sent:,} bytes sent for a {len(context):,}-byte context"


def test_max_iterations_falls_back_to_extract(options):
    lm = ScriptedLM(["x = 1"] * 3, final={"answer": "extracted"})
    result = run_rlm(
        "question -> answer", {"question": "q"}, lm=lm, max_iterations=3, sandbox=options
    )
    assert result.outputs["answer"] == "extracted"
    assert result.summary["iterations"] == 3


def test_compact_prompt_shows_size_not_text_and_sandbox_gets_a_str(options):
    seen: list = []

    class Capture(ScriptedLM):
        def reply(self, messages):
            seen.append(messages)
            return super().reply(messages)

    context = "needle-xyz " + "filler " * 2000
    lm = Capture(["print(type(context).__name__, len(context))", "SUBMIT(answer='ok')"])
    result = run_rlm(
        "context, question -> answer",
        {"context": context, "question": "where?"},
        lm=lm,
        prompt="compact",
        sandbox=options,
    )
    assert result.steps[0]["output"] == f"str {len(context)}\n"
    assert result.outputs == {"answer": "ok"}
    planner_prompt = " ".join(m["content"] for m in seen[0])
    assert "needle-xyz" not in planner_prompt  # no preview of the long input
    assert f"a str of {len(context):,} characters" in planner_prompt
    assert "payments" in planner_prompt  # the worked demonstration
    assert "where?" in planner_prompt  # short inputs are shown as usual
