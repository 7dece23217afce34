"""dspy's own interpreters, set up to run here, for side-by-side measurements.

dspy.PythonInterpreter (Deno + Pyodide) imports one module from deno.land at start, which is
unreachable offline; we map that import to `deno_std_shim.ts` with an import map. Anything
that reports these numbers says so.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

SHIM = Path(__file__).with_name("deno_std_shim.ts")
DENO_STD_IO = "https://deno.land/std@0.186.0/io/mod.ts"
NOTE = f"dspy.PythonInterpreter: {DENO_STD_IO} mapped to a local shim (offline)"

_import_map: str | None = None


def deno_available() -> bool:
    try:
        from deno import find_deno_bin

        return Path(find_deno_bin()).exists()
    except (ImportError, OSError, RuntimeError):
        return shutil.which("deno") is not None


def make_deno_interpreter(tools: dict[str, Any] | None = None):
    """A dspy.PythonInterpreter that starts without reaching deno.land."""
    import dspy

    global _import_map
    if _import_map is None:
        fd, _import_map = tempfile.mkstemp(prefix="fleet-rlm-import-map-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"imports": {DENO_STD_IO: SHIM.as_uri()}}, f)
    interp = dspy.PythonInterpreter(tools=tools)
    interp.deno_command.insert(2, f"--import-map={_import_map}")
    return interp


class DenoFactory:
    """Zero-argument interpreter factory for dspy.RLM, on dspy's default (Deno) interpreter."""

    execution_instructions = ""

    def __call__(self):
        return make_deno_interpreter()
