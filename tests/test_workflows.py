"""Each workflow end to end on the local sandbox with a scripted LM, asserting typed outputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fleet_rlm.cli import app
from fleet_rlm.documents import DocsError, load_documents
from fleet_rlm.runners import RunConfig, run_ask
from fleet_rlm.testing import ScriptedLM

DOC = """# Guide

## Modules
dspy.Predict and dspy.ChainOfThought are modules.

## Optimizers
BootstrapFewShot and MIPROv2 optimize programs.

```python
def forward(self, question): ...
```

## Errors
ValueError: signature mismatch
TimeoutError: LM did not answer
"""

runner = CliRunner()


@pytest.fixture
def docs(cli_env):
    path = cli_env / "guide.md"
    path.write_text(DOC)
    return path


def invoke(monkeypatch, args: list[str], steps: list[str], respond=lambda p: "ok") -> dict:
    lm = ScriptedLM(steps, respond=respond)
    monkeypatch.setattr("fleet_rlm.lm.make_lms", lambda settings, model=None: (lm, None))
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_run_architecture(docs, monkeypatch):
    steps = [
        "import re\nheads = re.findall(r'^## (.+)$', docs, re.M)\nprint(heads, query)",
        "mods = re.findall(r'dspy\\.(\\w+)', docs)\n"
        "opts = re.findall(r'(\\w+) and (\\w+) optimize', docs)[0]\n"
        "SUBMIT(modules=mods, optimizers=list(opts), design_principles=llm_query('principles?'))",
    ]
    data = invoke(
        monkeypatch,
        ["run-architecture", "--docs-path", str(docs), "--query", "Q"],
        steps,
        respond=lambda p: "Composable modules.",
    )
    assert data["outputs"] == {
        "modules": ["Predict", "ChainOfThought"],
        "optimizers": ["BootstrapFewShot", "MIPROv2"],
        "design_principles": "Composable modules.",
    }
    assert data["summary"]["sub_lm_calls"] == 1


def test_run_api_endpoints_uses_batched_queries(docs, monkeypatch):
    steps = [
        "chunks = docs.split('## ')[1:]\n"
        "found = llm_query_batched(['list endpoints: ' + c for c in chunks])\nprint(found)",
        "SUBMIT(api_endpoints=sorted({e for f in found for e in f.split(',') if e}))",
    ]

    def respond(prompt: str) -> str:
        return "dspy.Predict,dspy.ChainOfThought" if "Modules" in prompt else ""

    data = invoke(monkeypatch, ["run-api-endpoints", "--docs-path", str(docs)], steps, respond)
    assert data["outputs"]["api_endpoints"] == ["dspy.ChainOfThought", "dspy.Predict"]
    assert data["summary"]["sub_lm_calls"] == 3  # one per "## " section


def test_run_error_patterns(docs, monkeypatch):
    steps = [
        "import re\nerrs = re.findall(r'^(\\w+Error): (.+)$', docs, re.M)\nprint(errs)",
        "cats = {}\nfor name, msg in errs:\n    cats.setdefault(name, []).append(msg)\n"
        "SUBMIT(error_categories=cats, total_errors_found=len(errs))",
    ]
    data = invoke(monkeypatch, ["run-error-patterns", "--docs-path", str(docs)], steps)
    assert data["outputs"] == {
        "error_categories": {
            "ValueError": ["signature mismatch"],
            "TimeoutError": ["LM did not answer"],
        },
        "total_errors_found": 2,
    }


def test_run_custom_tool_calls_regex_extract_on_the_host(docs, monkeypatch):
    steps = [
        "h = regex_extract(r'^#+ (.+)$', docs, flags='m', groups=True)\n"
        "c = regex_extract('`' * 3 + r'(\\w*)', docs, groups=True)\nprint(h, c)",
        "SUBMIT(headers=h, code_blocks=[x for x in c if x],"
        " structure_summary=f'{len(h)} sections')",
    ]
    data = invoke(monkeypatch, ["run-custom-tool", "--docs-path", str(docs)], steps)
    assert data["outputs"]["headers"] == ["Guide", "Modules", "Optimizers", "Errors"]
    assert data["outputs"]["code_blocks"] == ["python"]
    assert data["outputs"]["structure_summary"] == "4 sections"


def test_run_trajectory_samples_chars_and_shows_steps(docs, monkeypatch):
    lm = ScriptedLM(["print(len(sample))", "SUBMIT(summary=f'{len(sample)} chars')"])
    monkeypatch.setattr("fleet_rlm.lm.make_lms", lambda settings, model=None: (lm, None))
    result = runner.invoke(app, ["run-trajectory", "--docs-path", str(docs), "--chars", "50"])
    assert result.exit_code == 0, result.output
    assert "50 chars" in result.output
    assert "print(len(sample))" in result.output  # every step is shown


def test_ask_over_a_folder_with_citations(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("intro\nThe magic number is 4217.\n")
    (tmp_path / "docs" / "b.txt").write_text("nothing here\n")
    (tmp_path / "docs" / "logo.png").write_bytes(b"\x89PNG\x00\x00binary")
    corpus = load_documents([tmp_path / "docs"])
    assert [f.path.split("/")[-1] for f in corpus.files] == ["a.md", "b.txt"]
    assert corpus.skipped and "binary" in corpus.skipped[0][1]
    steps = [
        "i = documents.find('magic number')\nprint(documents[i-40:i+40])",
        "SUBMIT(answer='4217', citations=['The magic number is 4217.'])",
    ]
    result = run_ask(corpus, "What is the magic number?", RunConfig(lm=ScriptedLM(steps)))
    assert result.outputs["answer"] == "4217"
    (citation,) = result.outputs["citations"]
    assert citation.startswith(str(tmp_path / "docs" / "a.md") + ":2")


def test_documents_errors(tmp_path):
    with pytest.raises(DocsError, match="Docs path does not exist"):
        load_documents([tmp_path / "nope"])
    (tmp_path / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DocsError, match="not UTF-8"):
        load_documents([tmp_path / "latin.txt"])
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DocsError, match="no readable text files"):
        load_documents([tmp_path / "empty_dir"])
