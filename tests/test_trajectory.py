"""Trajectory JSONL writer/reader and the terminal and HTML renderers (incl. real Chromium)."""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fleet_rlm.trajectory import (
    SCHEMA_VERSION,
    Trajectory,
    TrajectoryError,
    TrajectoryWriter,
    read_trajectory,
    render_html,
    render_step,
    render_terminal,
    summarize_inputs,
)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
HOSTILE = "<script>alert('pwned')</script>"


def sample_records() -> list[dict[str, Any]]:
    """A 3-step run: a search, a failing step with sub-calls and hostile output, a SUBMIT."""
    return [
        {
            "type": "run",
            "started_at": "2025-01-01T10:00:00+00:00",
            "signature": "context, query -> answer",
            "instructions": "Answer the query from the context. Never print all of it.",
            "inputs": summarize_inputs(
                {
                    "context": "One of the special magic numbers for alpha is: 12345. " * 500,
                    "query": "What is the special magic number for alpha?",
                }
            ),
            "model": "openai/gpt-4o-mini",
            "sub_model": "openai/gpt-4o-mini",
            "backend": "local",
            "settings": {"max_iters": 10, "max_llm_calls": 20},
        },
        {
            "type": "step",
            "index": 1,
            "reasoning": "First measure the context, then search it for the key with a regex.",
            "code": (
                "print(len(context))\nimport re\n"
                "hits = re.findall(r'magic numbers? for (\\w+) is: (\\d+)', context)\n"
                "print(hits[:1])"
            ),
            "output": "27000\n[('alpha', '12345')]",
            "error": False,
            "duration_s": 0.012,
            "lm": {"prompt_tokens": 1834, "completion_tokens": 212, "duration_s": 3.4},
            "sub_calls": [],
        },
        {
            "type": "step",
            "index": 2,
            "reasoning": "Double-check the candidate with a sub-LM before answering.",
            "code": "verdict = llm_query('Is 12345 the number for alpha?')\nprint(verdict)\n1/0",
            "output": f"Yes, it is.\nZeroDivisionError: division by zero {HOSTILE}",
            "error": True,
            "duration_s": 1.52,
            "lm": {"prompt_tokens": 2100, "completion_tokens": 150, "duration_s": 2.9},
            "sub_calls": [
                {
                    "tool": "llm_query",
                    "prompt": "Is 12345 the number for alpha? <img src=x onerror=alert(1)>",
                    "response": "Yes, it is.",
                    "duration_s": 1.5,
                    "error": None,
                },
                {
                    "tool": "regex_extract",
                    "prompt": '{"pattern": "\\\\d+", "text": "alpha is: 12345"}',
                    "response": ["12345"],
                    "duration_s": 0.001,
                    "error": None,
                },
            ],
        },
        {
            "type": "step",
            "index": 3,
            "reasoning": "Confirmed; submit the answer.",
            "code": "SUBMIT(answer='12345')",
            "output": "",
            "error": False,
            "duration_s": 0.004,
            "lm": {"prompt_tokens": 2400, "completion_tokens": 60, "duration_s": 1.1},
            "sub_calls": [],
        },
        {
            "type": "result",
            "outputs": {"answer": "12345"},
            "error": None,
            "final_reasoning": "Found by regex, confirmed by a sub-LM.",
            "duration_s": 9.1,
            "iterations": 3,
            "lm_calls": 3,
            "sub_lm_calls": 1,
            "prompt_tokens": 6334,
            "completion_tokens": 422,
        },
    ]


def write_records(path: Path, records: list[dict[str, Any]], **kw: Any) -> Path:
    with TrajectoryWriter(path, **kw) as writer:
        for record in records:
            writer.write(record)
    return path


# --- writing and reading ---------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    records = sample_records()
    path = write_records(tmp_path / "run.jsonl", records)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5
    assert all(json.loads(line)["type"] for line in lines)

    traj = read_trajectory(path)
    assert traj.run == {**records[0], "version": SCHEMA_VERSION}
    assert traj.steps == records[1:4]
    assert traj.result == records[4]
    assert traj.status == "completed" and not traj.interrupted and not traj.truncated
    assert traj.totals()["prompt_tokens"] == 6334
    assert traj.run["inputs"]["context"]["length"] == 27000
    assert len(traj.run["inputs"]["context"]["preview"]) == 200


def test_writer_fills_version_and_started_at(tmp_path: Path) -> None:
    path = write_records(tmp_path / "r.jsonl", [{"type": "run", "signature": "q -> a"}])
    run = read_trajectory(path).run
    assert run["version"] == SCHEMA_VERSION
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", run["started_at"])


def test_writer_flushes_every_line(tmp_path: Path) -> None:
    """A crashed run (writer never closed) keeps every record written so far."""
    path = tmp_path / "live.jsonl"
    writer = TrajectoryWriter(path)
    for record in sample_records()[:3]:
        writer.write(record)
    traj = read_trajectory(path)  # read while the writer is still open
    assert [s["index"] for s in traj.steps] == [1, 2]
    assert traj.interrupted and traj.status == "interrupted"
    writer.close()


def test_interrupted_and_truncated_file(tmp_path: Path) -> None:
    path = write_records(tmp_path / "cut.jsonl", sample_records()[:3])
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"type": "step", "index": 3, "reasoning": "half a li')  # killed mid-write
    traj = read_trajectory(path)
    assert traj.result is None and traj.truncated
    assert len(traj.steps) == 2
    totals = traj.totals()
    assert totals["iterations"] == 2
    assert totals["prompt_tokens"] == 1834 + 2100
    assert totals["sub_lm_calls"] == 1
    assert "interrupted" in render_html(traj)


def test_redaction_hook_applies_to_every_string(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    records = sample_records()
    records[0]["settings"]["api_key"] = secret
    records[0]["inputs"]["context"]["preview"] = f"key={secret}"
    records[1]["code"] = f"print('{secret}')"
    records[2]["sub_calls"][0]["prompt"] = f"use {secret}"
    records[2]["sub_calls"][1]["response"] = [secret]
    records[4]["outputs"] = {"answer": secret}
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace(secret, "[REDACTED]")

    path = write_records(tmp_path / "red.jsonl", records, redact=redact)
    raw = path.read_text(encoding="utf-8")
    assert secret not in raw
    assert raw.count("[REDACTED]") == 6
    traj = read_trajectory(path)
    assert traj.steps[0]["code"] == "print('[REDACTED]')"
    assert traj.result is not None and traj.result["outputs"] == {"answer": "[REDACTED]"}
    assert traj.steps[0]["error"] is False and traj.steps[0]["duration_s"] == 0.012
    assert "context" in traj.run["inputs"]  # keys are schema names, not redacted
    assert "2025-01-01T10:00:00+00:00" in seen


def test_writer_rejects_bad_order(tmp_path: Path) -> None:
    with TrajectoryWriter(tmp_path / "a.jsonl") as writer:
        with pytest.raises(TrajectoryError, match="first trajectory record must be the 'run'"):
            writer.write({"type": "step", "index": 1})
        with pytest.raises(TrajectoryError, match="record type must be one of"):
            writer.write({"type": "bogus"})
        writer.write({"type": "run"})
        with pytest.raises(TrajectoryError, match="exactly one 'run'"):
            writer.write({"type": "run"})
        writer.write({"type": "result", "outputs": None, "error": "boom"})
        with pytest.raises(TrajectoryError, match="no records may follow"):
            writer.write({"type": "step", "index": 1})
    with pytest.raises(TrajectoryError, match="closed"):
        writer.write({"type": "run"})


def test_writer_encodes_non_json_values(tmp_path: Path) -> None:
    records = sample_records()
    records[4]["outputs"] = {"tags": {"b", "a"}, "path": Path("x/y")}
    traj = read_trajectory(write_records(tmp_path / "v.jsonl", records))
    assert traj.result is not None and traj.result["outputs"] == {"tags": ["a", "b"], "path": "x/y"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("hello world\nnot json\n", "is not an RLM trajectory"),
        ('{"a": 1}\n', "is not an RLM trajectory"),
        ("[1, 2]\n", "is not an RLM trajectory"),
        ('{"type": "step", "index": 1}\n', "expected the 'run' record first"),
        ('{"type": "run"}\n', "no valid schema 'version'"),
        ('{"type": "run", "version": 99}\n', "schema v99"),
        ('{"type": "run", "version": 1}\n{broken\n{"type": "result"}\n', "corrupt line"),
        ('{"type": "run", "version": 1}\n{"type": "run", "version": 1}\n', "second 'run'"),
    ],
)
def test_read_rejects_non_trajectories(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TrajectoryError, match=message):
        read_trajectory(path)


def test_read_skips_unknown_record_types(tmp_path: Path) -> None:
    path = tmp_path / "fwd.jsonl"
    path.write_text(
        '{"type": "run", "version": 1}\n{"type": "annotation", "x": 1}\n'
        '{"type": "step", "index": 1}\n',
        encoding="utf-8",
    )
    assert len(read_trajectory(path).steps) == 1


# --- rendering -------------------------------------------------------------------------------


def _traj() -> Trajectory:
    records = sample_records()
    return Trajectory(run={**records[0], "version": 1}, steps=records[1:4], result=records[4])


def test_render_terminal_shows_steps_without_interpreting_markup() -> None:
    traj = _traj()
    traj.steps[0]["output"] = "[bold red]not markup[/bold red] 27000"
    buf = io.StringIO()
    render_terminal(traj, Console(file=buf, width=120, color_system=None))
    text = buf.getvalue()
    for needle in (
        "RLM trajectory",
        "completed",
        "Step 1",
        "Step 2",
        "Step 3",
        "First measure the context",
        "re.findall",
        "[bold red]not markup[/bold red] 27000",
        "ZeroDivisionError",
        "llm_query",
        "regex_extract",
        "1,834 → 212 tokens",
        "12345",
        "6,334 → 422 tokens",
    ):
        assert needle in text, needle


def test_render_terminal_interrupted() -> None:
    traj = _traj()
    traj.result = None
    buf = io.StringIO()
    render_terminal(traj, Console(file=buf, width=100, color_system=None))
    assert "interrupted" in buf.getvalue()


def test_html_escapes_hostile_content() -> None:
    traj = _traj()
    traj.run["signature"] = f"context -> {HOSTILE}"
    traj.run["inputs"][HOSTILE] = {"type": "str", "length": 1, "preview": HOSTILE}
    traj.steps[0]["reasoning"] = HOSTILE
    traj.steps[0]["code"] = f"print('{HOSTILE}')"
    traj.steps[1]["sub_calls"][0]["response"] = f'"></pre></details>{HOSTILE}'
    traj.steps[1]["sub_calls"][1]["tool"] = HOSTILE
    traj.steps[2]["index"] = '3" onmouseover="alert(1)'
    assert traj.result is not None
    traj.result["outputs"] = {HOSTILE: HOSTILE}
    traj.result["final_reasoning"] = "bad\x00byte and lone \ud800 surrogate"
    page = render_html(traj)

    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert 'onmouseover="' not in page
    assert html.escape(HOSTILE) in page or "&lt;script&gt;" in page
    assert "\x00" not in page and "\ud800" not in page
    page.encode("utf-8")  # must be encodable
    # Self-contained: CSP forbids scripts and network; no external resources referenced.
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "@import" not in page and "url(" not in page


def test_html_shows_everything() -> None:
    page = render_html(_traj())
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    for step in _traj().steps:
        assert step["reasoning"] in text
        assert step["code"] in text
        assert step["output"] in text
        for call in step["sub_calls"]:
            assert call["prompt"] in text
    assert page.count("<details") >= 2 + 2  # two sub-calls, instructions, settings
    assert "6,334" in text and "9.1 s" in text and "1,834 → 212 tokens" in text
    assert 'class="badge completed"' in page


def test_html_without_pygments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pygments", None)
    page = render_html(_traj())
    assert '<pre class="code">SUBMIT(answer=&#x27;12345&#x27;)</pre>' in page


# --- real browser ----------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_html_in_headless_chromium(tmp_path: Path) -> None:
    records = sample_records()
    path = write_records(tmp_path / "run.jsonl", records)
    page = tmp_path / "trajectory.html"
    page.write_text(render_html(read_trajectory(path)), encoding="utf-8")
    url = page.as_uri()

    # (a) a screenshot
    png = tmp_path / "shot.png"
    shot = _chromium(
        [f"--screenshot={png}", "--window-size=1280,2000", url], tmp_path / "profile-a"
    )
    assert png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2000)
    assert len(data) > 20_000  # a blank page compresses to a few KB
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    shutil.copyfile(png, ARTIFACTS / "trajectory.png")

    # (b) the DOM has every step's content, and (c) the console stayed silent
    dump = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", url], tmp_path / "prof-b")
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom_text = html.unescape(re.sub(r"<[^>]+>", "", dump.stdout))
    for step in records[1:4]:
        assert f"Step {step['index']}" in dom_text
        assert step["reasoning"] in dom_text
        assert step["code"] in dom_text
        assert step["output"] in dom_text
        for call in step["sub_calls"]:
            assert call["prompt"] in dom_text
            response = call["response"]
            if not isinstance(response, str):
                response = json.dumps(response, indent=2)
            assert response in dom_text
    assert "<script" not in dump.stdout.lower()
    # The page has no JS: any console line (errors, CSP violations, blocked loads) is a bug.
    console_lines = [ln for ln in dump.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert console_lines == []


def test_summarize_inputs_is_bounded() -> None:
    summary = summarize_inputs({"rows": list(range(1_000_000)), "n": 7, "q": "hi"}, 50)
    assert summary["rows"]["type"] == "list" and summary["rows"]["length"] == 1_000_000
    assert len(summary["rows"]["preview"]) <= 50
    assert summary["n"] == {"type": "int", "length": 1, "preview": "7"}
    assert summary["q"] == {"type": "str", "length": 2, "preview": "hi"}


def test_render_step_alone_cuts_long_output() -> None:
    step = dict(sample_records()[2])
    step["output"] = "x" * 10_000
    buf = io.StringIO()
    render_step(step, Console(file=buf, width=100, color_system=None), max_chars=500)
    text = buf.getvalue()
    assert "Step 2" in text
    assert "9,500 more characters" in text
    assert "llm_query" in text


def test_totals_count_batched_prompts_and_html_lists_extra_result_fields() -> None:
    traj = _traj()
    traj.steps[0]["sub_calls"] = [
        {"tool": "llm_query_batched", "prompt": '["a", "b", "c"]', "response": "[]"},
        {"tool": "llm_query_batched", "prompt": ["d", "e"], "response": []},
    ]
    assert traj.result is not None
    traj.result.update({"restarts": 2, "bytes_to_sandbox": 12345, "hit_rate": 0.25})
    page = render_html(traj)
    for label, value in (("restarts", "2"), ("bytes to sandbox", "12,345"), ("hit rate", "0.25")):
        assert f"<b>{value}</b><span>{label}</span>" in page
    traj.result = None
    assert traj.totals()["sub_lm_calls"] == 3 + 2 + 1  # two batches, one llm_query
