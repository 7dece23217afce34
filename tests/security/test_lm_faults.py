"""LM faults: a failing, slow or nonsensical LM ends the run with a clear error or the best
answer -- never a hang -- and `RunError.records` holds the trajectory so far.

Every run goes through `bounded()`, so a hang fails the test instead of blocking the suite.
A hung *planner* request is bounded by the LM client (dspy.LM / LiteLLM `timeout` and
`num_retries`), which then raises: `TimeoutLM` plays that client. A hung *sub-LM* call
(`llm_query`) is a host tool call, bounded by the sandbox's `tool_timeout`.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from fleet_rlm.engine import RunError, SandboxOptions, run_rlm
from fleet_rlm.testing import ScriptedLM


def bounded(fn, limit: float = 60.0):
    """Run `fn()` in a thread; fail if it does not finish within `limit` seconds."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    t0 = time.monotonic()
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the run did not finish within {limit} s"
    box["elapsed"] = time.monotonic() - t0
    return box


class RawPlannerLM(ScriptedLM):
    """Plays the script, then answers every planner call with `raw` text (empty, garbage)."""

    def __init__(self, steps, raw: str, **kw) -> None:
        super().__init__(steps, **kw)
        self.raw = raw

    def reply(self, messages):
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        if system and self._cursor[0] >= len(self._steps):
            return self.raw
        return super().reply(messages)


class TimeoutLM(ScriptedLM):
    """After the script, each planner request 'hangs' until the client's timeout fires."""

    def reply(self, messages):
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        if system and self._cursor[0] >= len(self._steps):
            time.sleep(0.2)
            raise TimeoutError("LM request timed out after 30 s (client timeout)")
        return super().reply(messages)


GOOD_STEPS = ["x = len(question); print('len', x)", "print('second step', x * 2)"]


def check_failed_run(box: dict, *needles: str) -> RunError:
    err = box.get("error")
    assert isinstance(err, RunError), box
    for needle in needles:
        assert needle in str(err), str(err)
    records = err.records
    assert [r["type"] for r in records] == ["run", "step", "step", "result"]
    assert records[1]["output"] == "len 8\n" and records[2]["output"] == "second step 16\n"
    assert records[-1]["error"] and records[-1]["iterations"] == 2
    return err


def run(lm, options: SandboxOptions, **kw):
    return bounded(
        lambda: run_rlm(
            "question -> answer", {"question": "question"}, lm=lm, sandbox=options, **kw
        )
    )


def test_lm_raising_ends_the_run_with_the_trajectory(options):
    def boom(_):
        raise ConnectionError("provider unreachable")

    box = run(ScriptedLM([*GOOD_STEPS, boom]), options)
    check_failed_run(box, "provider unreachable")


def test_lm_timing_out_ends_the_run_with_the_trajectory(options):
    box = run(TimeoutLM(GOOD_STEPS), options)
    check_failed_run(box, "timed out")
    assert box["elapsed"] < 30


@pytest.mark.parametrize("raw", ["", "   \n", "I think the answer is 42 {{{", "[[ ## code ## ]]"])
def test_empty_or_malformed_lm_output_ends_the_run_clearly(options, raw):
    box = run(RawPlannerLM(GOOD_STEPS, raw), options)
    check_failed_run(box, "AdapterParseError")


def test_lm_code_that_does_not_run_is_fed_back(options):
    steps = ["def broken(:", "this is prose, not code", "SUBMIT(answer='recovered')"]
    box = run(ScriptedLM(steps), options)
    assert "error" not in box, box.get("error")
    result = box["value"]
    assert result.outputs == {"answer": "recovered"}
    assert result.steps[0]["error"] and result.steps[1]["error"]


def test_a_hanging_sub_lm_call_is_cut_by_tool_timeout(options):
    """llm_query never answers: the model gets a TimeoutError and carries on."""
    release = threading.Event()

    def respond(prompt):
        release.wait(30)
        return "late"

    steps = [
        "try:\n    r = llm_query('hello')\nexcept Exception as e:\n    r = 'failed: ' + str(e)\n"
        "print(r)",
        "SUBMIT(answer=r)",
    ]
    options = dataclasses.replace(options, timeout=10, tool_timeout=1.0)
    try:
        box = run(ScriptedLM(steps, respond=respond), options)
    finally:
        release.set()
    assert "error" not in box, box.get("error")
    assert box["elapsed"] < 15
    answer = box["value"].outputs["answer"]
    assert answer.startswith("failed: ") and "gave no answer within 1 s" in answer


def test_llm_budget_running_out_mid_batch(options):
    """max_llm_calls=3: one call, then a batch of 5 is refused whole, then an endless retry
    loop hits the sandbox timeout (restart: state lost); the model still submits an answer."""
    steps = [
        "first = llm_query('one'); print(first)",
        "rs = llm_query_batched([f'p{i}' for i in range(5)])",
        "while True:\n    try:\n        llm_query('again')\n    except Exception:\n        pass",
        "SUBMIT(answer='best: ' + globals().get('first', 'redo'))",
    ]
    options = dataclasses.replace(options, timeout=2)
    box = run(ScriptedLM(steps, respond=lambda p: p.upper()), options, max_llm_calls=3)
    assert "error" not in box, box.get("error")
    result = box["value"]
    assert result.outputs == {"answer": "best: redo"}  # the timeout restarted the sandbox
    outputs = [s["output"] for s in result.steps]
    assert "LLM call limit exceeded" in outputs[1]
    assert "TimeoutError" in outputs[2] and "every variable you defined is gone" in outputs[2]
    assert result.summary["sub_lm_calls"] <= 3
    assert box["elapsed"] < 30


def test_script_that_never_submits_falls_back_to_the_best_answer(options):
    box = run(ScriptedLM(["x = 1"] * 3, final={"answer": "best effort"}), options, max_iterations=3)
    assert box["value"].outputs == {"answer": "best effort"}
    assert box["value"].summary["iterations"] == 3
