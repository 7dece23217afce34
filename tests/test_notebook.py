"""The walkthrough notebook runs top to bottom, headlessly, as a scripted smoke run.

The kernel is this interpreter (the project's venv), `FLEET_RLM_NOTEBOOK_LM=scripted` makes the
notebook use `ScriptedLM` whatever `.env` or the offline model say, and
`FLEET_RLM_NOTEBOOK_MODAL=skip` keeps the Modal cell off the network. No API key, no model.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "rlm-dspy-modal.ipynb"
PATTERN_TAGS = ("pattern-1", "pattern-2", "pattern-3")


def _kernel_manager(root: Path, env: dict[str, str]) -> KernelManager:
    """A kernel that is exactly this interpreter, not whatever `python3` kernelspec is installed."""
    spec_dir = root / "kernels" / "fleet-rlm-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fleet-rlm (test)",
        "language": "python",
        "env": env,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="fleet-rlm-test", kernel_spec_manager=specs)


def _text(cell) -> str:
    """Everything a code cell showed: streams, plain-text results and rich displays."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return re.sub(r"\x1b\[[0-9;]*m", "", "".join(parts))  # no ANSI colours


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after a headless run; (cells by tag, seconds taken)."""
    root = tmp_path_factory.mktemp("notebook")
    env = {
        "FLEET_RLM_NOTEBOOK_LM": "scripted",
        "FLEET_RLM_NOTEBOOK_MODAL": "skip",
        "TMPDIR": str(root),  # the notebook's trajectories land here
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        km=_kernel_manager(root, env),
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    started = time.monotonic()
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    elapsed = time.monotonic() - started
    by_tag = {}
    for cell in nb.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            by_tag[tag] = cell
    return nb, by_tag, elapsed


def test_notebook_runs_top_to_bottom(executed):
    nb, _, elapsed = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    errors = [o for c in code for o in c.outputs if o["output_type"] == "error"]
    assert not errors
    assert elapsed < 60, f"the notebook took {elapsed:.1f} s"


def test_scripted_run_is_labelled(executed):
    _, cells, _ = executed
    text = _text(cells["choose-lm"])
    assert "SCRIPTED SMOKE RUN" in text
    assert "not a model; its answers are scripted" in text
    for tag in PATTERN_TAGS:
        assert "[scripted smoke run: not a model]" in _text(cells[tag]), tag


def test_pattern_1_navigate_query_synthesise(executed):
    _, cells, _ = executed
    text = _text(cells["pattern-1"])
    assert re.search(r"architecture: 3 iterations, 3 LM calls, 3 sub-LM calls", text), text
    assert "ChainOfThought" in text and "ReAct" in text  # modules
    assert "MIPROv2" in text and "BootstrapFewShot" in text  # optimizers
    assert "design principles: (scripted)" in text


def test_pattern_2_parallel_chunks(executed):
    _, cells, _ = executed
    text = _text(cells["pattern-2"])
    assert "llm_query_batched calls: 1;" in text, text
    batched = int(re.search(r"sub-LM calls in total: (\d+)", text).group(1))
    assert batched > 5  # one batch, many chunks
    endpoints = int(re.search(r"API endpoints \((\d+)\)", text).group(1))
    assert endpoints > 20
    assert "ChainOfThought.forward(self, **kwargs)" in text


def test_pattern_3_stateful_multi_step(executed):
    _, cells, _ = executed
    text = _text(cells["pattern-3"])
    assert int(re.search(r"total errors found: (\d+)", text).group(1)) > 10, text
    assert "AdapterParseError" in text and "bad arguments (" in text  # categorised by llm_query
    assert "warnings (2)" in text  # found by the refining step, added to the earlier state
    assert "step 4:" in text


def test_trajectory_and_backends(executed):
    _, cells, _ = executed
    trajectory = _text(cells["trajectory"])
    assert "RLM trajectory" in trajectory and "Step 3" in trajectory
    assert "completed: 4 steps" in trajectory
    assert "local sandbox answer: 0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89" in _text(
        cells["backend-local"]
    )
    assert "Modal backend skipped: FLEET_RLM_NOTEBOOK_MODAL" in _text(cells["backend-modal"])


def test_committed_notebook_has_no_outputs():
    """The repository keeps the notebook clean; `make notebook` writes executed copies elsewhere."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:80]
