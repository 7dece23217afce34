"""High-level RLM workflows: one function per task, each a signature plus its inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy

from fleet_rlm import signatures as sig
from fleet_rlm.documents import Corpus
from fleet_rlm.engine import Record, RunResult, SandboxOptions, run_rlm
from fleet_rlm.tools import regex_extract


@dataclass
class RunConfig:
    """What every workflow shares: models, sandbox, budgets, extra tools, observers."""

    lm: dspy.BaseLM | None = None
    sub_lm: dspy.BaseLM | None = None
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)
    max_iterations: int = 20
    max_llm_calls: int = 50
    tools: list[Callable] = field(default_factory=list)
    on_record: Callable[[Record], None] | None = None
    prompt: str = "dspy"

    def run(self, signature: Any, inputs: dict[str, Any], tools: list[Callable] = ()) -> RunResult:
        return run_rlm(
            signature,
            inputs,
            lm=self.lm,
            sub_lm=self.sub_lm,
            sandbox=self.sandbox,
            tools=[*tools, *self.tools] or None,
            max_iterations=self.max_iterations,
            max_llm_calls=self.max_llm_calls,
            on_record=self.on_record,
            prompt=self.prompt,
        )


def run_basic(question: str, cfg: RunConfig) -> RunResult:
    return cfg.run(sig.BasicQuestion, {"question": question})


def run_ask(corpus: Corpus, question: str, cfg: RunConfig) -> RunResult:
    result = cfg.run(sig.AskDocuments, {"documents": corpus.text, "question": question})
    citations = result.outputs.get("citations") or []
    if isinstance(citations, list):
        result.outputs["citations"] = [corpus.cite(str(c)) for c in citations]
    return result


def run_architecture(docs: str, query: str, cfg: RunConfig) -> RunResult:
    return cfg.run(sig.ExtractArchitecture, {"docs": docs, "query": query})


def run_api_endpoints(docs: str, cfg: RunConfig) -> RunResult:
    return cfg.run(sig.ExtractAPIEndpoints, {"docs": docs})


def run_error_patterns(docs: str, cfg: RunConfig) -> RunResult:
    return cfg.run(sig.FindErrorPatterns, {"docs": docs})


def run_trajectory(sample: str, cfg: RunConfig) -> RunResult:
    return cfg.run(sig.SummarizeSample, {"sample": sample})


def run_custom_tool(docs: str, cfg: RunConfig) -> RunResult:
    return cfg.run(sig.AnalyzeStructure, {"docs": docs}, tools=[regex_extract])
