"""fleet-rlm: Recursive Language Models on DSPy, with fast, isolated sandboxes.

The public API is imported lazily so that `fleet-rlm --help` does not pay for importing dspy.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# LiteLLM fetches a price list from the network when imported (and retries when offline); its
# bundled copy is enough. This must happen before dspy imports LiteLLM; users can override it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_EXPORTS = {
    "run_rlm": "fleet_rlm.engine",
    "RunResult": "fleet_rlm.engine",
    "RunError": "fleet_rlm.engine",
    "SandboxOptions": "fleet_rlm.engine",
    "SandboxFactory": "fleet_rlm.engine",
    "SandboxInterpreter": "fleet_rlm.sandbox.interpreter",
    "SandboxLimits": "fleet_rlm.sandbox.local",
    "load_settings": "fleet_rlm.config",
    "load_documents": "fleet_rlm.documents",
    "tool": "fleet_rlm.tools",
    "regex_extract": "fleet_rlm.tools",
    "ScriptedLM": "fleet_rlm.testing",
}
__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from fleet_rlm.config import load_settings
    from fleet_rlm.documents import load_documents
    from fleet_rlm.engine import RunError, RunResult, SandboxFactory, SandboxOptions, run_rlm
    from fleet_rlm.sandbox.interpreter import SandboxInterpreter
    from fleet_rlm.sandbox.local import SandboxLimits
    from fleet_rlm.testing import ScriptedLM
    from fleet_rlm.tools import regex_extract, tool


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fleet_rlm' has no attribute {name!r}")
