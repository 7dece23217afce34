"""The sample corpus builds reproducibly and the committed copy is from the installed dspy."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_dspy_corpus.py"
COMMITTED = ROOT / "rlm_content" / "dspy-knowledge" / "dspy-doc.txt"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dspy_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_full_build_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """Two fresh interpreters (different hash seeds and cwd) must write the same bytes."""
    outputs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = []
    for seed, out in zip(("1", "2"), outputs, strict=True):
        env = {**os.environ, "PYTHONHASHSEED": seed, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        cwd = tmp_path if seed == "1" else ROOT
        procs.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), "--output", str(out)],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert "wrote" in stdout
    first, second = (p.read_bytes() for p in outputs)
    assert first == second
    assert len(first) >= 1_000_000
    text = first.decode("utf-8")
    assert not re.search(r" at 0x[0-9a-fA-F]{6,}", text)
    assert str(Path.home()) + "/" not in text
    assert str(ROOT) not in text


def test_subset_build_in_process(builder: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "rlm.txt"
    text = builder.build(out, prefixes=["dspy.predict.rlm"])
    assert out.read_bytes() == text.encode("utf-8")
    assert builder.build(prefixes=["dspy.predict.rlm"]) == text
    assert text.startswith(builder.header_line() + "\n")
    assert "\n# dspy.predict.rlm\n" in text
    assert "\n## class RLM(Module)\n" in text
    assert "\n### RLM.forward\n" in text
    assert "```python\ndef forward(self" in text
    assert "# dspy.predict.predict\n" not in text
    # @experimental's notice does not leave the real docstring half-indented.
    rlm_doc = text.split("## class RLM(Module)\n", 1)[1]
    assert "\nRecursive Language Model module.\n\nUses a sandboxed REPL" in rlm_doc
    without_source = builder.build(prefixes=["dspy.predict.rlm"], include_source=False)
    assert "Source:" not in without_source and len(without_source) < len(text)


def test_committed_corpus_matches_installed_dspy(builder: ModuleType) -> None:
    assert COMMITTED.is_file(), "run: uv run python scripts/build_dspy_corpus.py"
    with COMMITTED.open(encoding="utf-8") as fh:
        first_line = fh.readline().rstrip("\n")
    assert first_line == builder.header_line(), (
        "rlm_content/dspy-knowledge/dspy-doc.txt is stale: "
        "run `uv run python scripts/build_dspy_corpus.py`"
    )
    assert COMMITTED.stat().st_size >= 1_000_000


def test_stable_text_helpers(builder: ModuleType) -> None:
    assert builder._stable_repr(frozenset({"b", "a", "c"})) == "frozenset({'a', 'b', 'c'})"
    assert builder._stable_repr({3, 1}) == "{1, 3}"
    assert builder._stable_repr(set()) == "set()"
    sentinel = object()
    assert builder._stable_repr(sentinel) == "<object object>"

    def f(a, b=sentinel, c=frozenset({"y", "x"})):  # noqa: B008 - a default under test
        """Doc."""
        return a

    assert builder.signature_text(f) == "(a, b=<object object>, c=frozenset({'x', 'y'}))"
    assert builder.source_without_docstring(f).splitlines()[1].strip() == "return a"
    assert builder.stable(f"{Path.home()}/.cache") == "~/.cache"

    notice = "    Experimental: may change.\n\nSummary.\n\n    Details\n        more\n    "
    assert builder.clean_doc(notice) == "Experimental: may change.\n\nSummary.\n\nDetails\n    more"
    assert (
        builder.clean_doc("Summary.\n\n    Args:\n        x: y\n") == "Summary.\n\nArgs:\n    x: y"
    )
