"""The CLI as a user meets it: help, version, commands, and clear errors for bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fleet_rlm import __version__
from fleet_rlm.cli import app
from fleet_rlm.testing import ScriptedLM

runner = CliRunner()

SPEC_COMMANDS = [
    "run-basic",
    "run-architecture",
    "run-api-endpoints",
    "run-error-patterns",
    "run-trajectory",
    "run-custom-tool",
    "check-secret",
    "check-secret-key",
    "ask",
    "view",
]


@pytest.fixture
def scripted(monkeypatch, cli_env):
    """Make every command use a ScriptedLM; returns a setter for the script."""
    holder: dict = {}

    def fake_make_lms(settings, model=None):
        return holder["lm"], None

    monkeypatch.setattr("fleet_rlm.lm.make_lms", fake_make_lms)

    def set_script(*steps, **kw):
        holder["lm"] = ScriptedLM(list(steps), **kw)

    return set_script


def test_help_lists_every_spec_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in SPEC_COMMANDS:
        assert command in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_missing_docs_path_is_exit_1_with_message(scripted):
    scripted("SUBMIT(['a'])")
    result = runner.invoke(app, ["run-api-endpoints", "--docs-path", "nope/missing.txt"])
    assert result.exit_code == 1
    assert "Docs path does not exist: nope/missing.txt" in result.output
    assert "Traceback" not in result.output


def test_missing_required_option_is_exit_2():
    result = runner.invoke(app, ["run-architecture"])
    assert result.exit_code == 2
    assert "--docs-path" in result.output


def test_binary_and_empty_files_are_refused(scripted, tmp_path):
    (tmp_path / "bin.dat").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "empty.txt").write_text("")
    for name, message in (("bin.dat", "looks binary"), ("empty.txt", "is empty")):
        result = runner.invoke(app, ["ask", "--docs-path", name, "--question", "q"])
        assert result.exit_code == 1, result.output
        assert message in result.output


def test_unconfigured_lm_names_the_ways_out(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doc.txt").write_text("hello")
    for var in ("DSPY_LM_MODEL", "DSPY_LLM_API_KEY", "DSPY_LM_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLEET_RLM_ENV_FILE", str(tmp_path / "empty.env"))
    (tmp_path / "empty.env").write_text("")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    result = runner.invoke(app, ["run-basic"])
    assert result.exit_code == 1
    assert "Planner LM not configured" in result.output and "--lm local" in result.output


def test_malformed_env_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.env"
    bad.write_text("DSPY_LM_MODEL=x\nnot a line\n")
    result = runner.invoke(app, ["run-basic", "--env-file", str(bad)])
    assert result.exit_code == 1 and "line 2" in result.output


def test_unknown_sandbox_is_refused(scripted):
    scripted("SUBMIT('x')")
    result = runner.invoke(app, ["run-basic", "--sandbox", "docker"])
    assert result.exit_code == 1 and "unknown sandbox 'docker'" in result.output


def test_run_basic_json_output(scripted):
    scripted(
        "fib = [0, 1]\nwhile len(fib) < 12:\n    fib.append(fib[-1] + fib[-2])\nprint(fib)",
        "SUBMIT(answer=str(fib))",
    )
    result = runner.invoke(app, ["run-basic", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["outputs"]["answer"] == "[0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89]"
    assert data["summary"]["iterations"] == 2


def test_trajectory_out_and_view(scripted, tmp_path):
    scripted("print('step one')", "SUBMIT(answer='42')")
    traj = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["run-basic", "--trajectory-out", str(traj)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in traj.read_text().splitlines()]
    assert [r["type"] for r in lines] == ["run", "step", "step", "result"]
    shown = runner.invoke(app, ["view", str(traj)])
    assert shown.exit_code == 0 and "step one" in shown.output
    page = tmp_path / "t.html"
    assert runner.invoke(app, ["view", str(traj), "--html", str(page)]).exit_code == 0
    assert "step one" in page.read_text()
    missing = runner.invoke(app, ["view", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1 and "not found" in missing.output
