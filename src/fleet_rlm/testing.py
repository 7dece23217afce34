"""A deterministic, scripted LM for tests, demos and benchmarks of the machinery (no network).

It answers the RLM planner from a script of code steps and answers sub-LM prompts
(`llm_query`) with a function, so one instance can play both roles. It is not a model:
anything it "finds" was written into its script.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.dummies import DummyLM

Step = str | dict[str, Any] | Callable[[str], "str | dict[str, Any]"]


def _echo(prompt: str) -> str:
    return f"echo: {prompt[:200]}"


class _ScriptedEngine(DummyEngine):
    def _complete_messages(self, messages: list[dict]) -> Response:
        owner: ScriptedLM = self.owner
        text = owner.reply(messages)
        prompt_chars = sum(len(m.get("content") or "") for m in messages)
        usage = Usage(
            input_tokens=prompt_chars // 4,
            output_tokens=len(text) // 4,
            total_tokens=(prompt_chars + len(text)) // 4,
        )
        return Response(
            id=None,
            model="scripted",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=usage,
        )


class ScriptedLM(DummyLM):
    """Planner steps from `steps`; raw prompts (llm_query) answered by `respond`.

    A step is Python code (a str), a dict of output fields (`{"reasoning": ..., "code": ...}`),
    or a callable that receives the last user message (with the REPL history) and returns
    either. When the script runs out, the planner SUBMITs what `final` holds (or fails loudly).
    `delay` (seconds) is slept per sub-LM call, to measure concurrency.
    """

    def __init__(
        self,
        steps: Iterable[Step] = (),
        respond: Callable[[str], str] = _echo,
        *,
        final: dict[str, Any] | None = None,
        delay: float = 0.0,
    ) -> None:
        super().__init__([])
        self.model = "scripted"
        self._steps = list(steps)
        self._cursor = [0]  # shared by copies: a run's planner copy advances the same script
        self._lock = threading.Lock()
        self.respond = respond
        self.final = final
        self.delay = delay
        self._install_engine()

    def _install_engine(self) -> None:
        self._engine_spec = _ScriptedEngine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs: Any) -> ScriptedLM:
        copied = super().copy(**kwargs)
        copied._install_engine()
        return copied

    def reply(self, messages: list[dict]) -> str:
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        last = messages[-1].get("content") or ""
        if "[[ ## code ## ]]" in system:
            return self._format_answer_fields(self._next_step(last))
        if "[[ ## " in system:  # dspy.RLM's extract fallback after max iterations
            if self.final is None:
                raise RuntimeError("ScriptedLM: the script ended without SUBMIT and no `final`")
            return self._format_answer_fields(self.final)
        if self.delay:
            time.sleep(self.delay)
        return self.respond(last)

    def _next_step(self, last: str) -> dict[str, Any]:
        with self._lock:
            index = self._cursor[0]
            self._cursor[0] += 1
        if index >= len(self._steps):
            if self.final is None:
                code = "SUBMIT('ScriptedLM: script exhausted')"
            else:
                code = f"SUBMIT(**{self.final!r})"
            return {"reasoning": "The script has no more steps.", "code": code}
        step = self._steps[index]
        if callable(step):
            step = step(last)
        if isinstance(step, str):  # fenced, the way real models answer
            step = {"reasoning": f"Scripted step {index + 1}.", "code": f"```python\n{step}\n```"}
        return step
