"""The RLM engine: `dspy.RLM` driving a fleet-rlm sandbox, with a live, inspectable trajectory.

dspy.RLM does the loop; this module chooses the sandbox, isolates per-run LM state (so
token counts and histories of parallel runs never mix), records every step as it happens
and turns failures into one clear error that keeps the trajectory so far.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.primitives.code_interpreter import FinalOutput
from dspy.utils.callback import BaseCallback

from fleet_rlm.prompts import (
    STYLES,
    compact_demos,
    compact_instructions,
    present_long_inputs,
)
from fleet_rlm.redact import Redactor
from fleet_rlm.sandbox.interpreter import EXECUTION_INSTRUCTIONS, SandboxInterpreter, ToolCall
from fleet_rlm.sandbox.local import LocalTransport, SandboxLimits
from fleet_rlm.sandbox.transport import Transport

Record = dict[str, Any]


class RunError(RuntimeError):
    """An RLM run failed; `records` holds the trajectory up to the failure."""

    def __init__(self, message: str, records: list[Record]) -> None:
        super().__init__(message)
        self.records = records


@dataclass
class SandboxOptions:
    """How each run's sandbox is made."""

    backend: str = "local"
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    timeout: float = 120.0
    tool_timeout: float = 600.0
    max_output_chars: int = 100_000
    modal: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in ("local", "modal"):
            raise ValueError(f"unknown sandbox backend {self.backend!r}; choose local or modal")
        for name in ("timeout", "tool_timeout", "max_output_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sandbox {name} must be positive, got {getattr(self, name)}")

    def transport(self) -> Transport:
        if self.backend == "local":
            return LocalTransport(self.limits)
        if self.backend == "modal":
            from fleet_rlm.sandbox.modal import ModalTransport

            return ModalTransport(**self.modal)
        raise ValueError(f"unknown sandbox backend {self.backend!r}; choose local or modal")


class SandboxFactory:
    """The zero-argument `interpreter_factory` dspy.RLM calls once per forward pass."""

    execution_instructions = EXECUTION_INSTRUCTIONS

    def __init__(
        self,
        options: SandboxOptions | None = None,
        *,
        on_tool_call: Callable[[ToolCall], None] | None = None,
        on_execute: Callable[[str, Any, str | None, float], None] | None = None,
    ) -> None:
        self.options = options or SandboxOptions()
        self.on_tool_call = on_tool_call
        self.on_execute = on_execute
        self.created: list[SandboxInterpreter] = []

    def __call__(self) -> SandboxInterpreter:
        interpreter = SandboxInterpreter(
            self.options.transport(),
            timeout=self.options.timeout,
            tool_timeout=self.options.tool_timeout,
            max_output_chars=self.options.max_output_chars,
            on_tool_call=self.on_tool_call,
            on_execute=self.on_execute,
        )
        self.created.append(interpreter)
        return interpreter


@dataclass
class RunResult:
    outputs: dict[str, Any]
    prediction: dspy.Prediction
    records: list[Record]

    @property
    def steps(self) -> list[Record]:
        return [r for r in self.records if r["type"] == "step"]

    @property
    def summary(self) -> Record:
        return self.records[-1]


def token_usage(history: list[dict]) -> tuple[int | None, int | None]:
    prompt = completion = 0
    seen = False
    for entry in history:
        usage = entry.get("usage") or {}
        if usage:
            seen = True
            prompt += int(usage.get("prompt_tokens") or 0)
            completion += int(usage.get("completion_tokens") or 0)
    return (prompt, completion) if seen else (None, None)


class _Recorder(BaseCallback):
    """Builds step records from dspy's action calls and the sandbox's executes, live."""

    def __init__(
        self,
        rlm: dspy.RLM | None,
        planner: dspy.BaseLM,
        emit: Callable[[Record], None],
        redact: Redactor,
    ) -> None:
        self.rlm, self.planner, self.emit, self.redact = rlm, planner, emit, redact
        self._actions: dict[str, tuple[float, int]] = {}
        self._pending: Record | None = None
        self._calls: list[Record] = []
        self.steps = 0

    # dspy callbacks: the planner's action (reasoning + code) for each iteration
    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if self.rlm is not None and instance is self.rlm.generate_action:
            self._flush_unexecuted()
            self._actions[call_id] = (time.monotonic(), len(self.planner.history))

    def on_module_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        started = self._actions.pop(call_id, None)
        if started is None or outputs is None:
            return
        t0, mark = started
        prompt, completion = token_usage(self.planner.history[mark:])
        self._pending = {
            "reasoning": getattr(outputs, "reasoning", "") or "",
            "code": getattr(outputs, "code", "") or "",
            "lm": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "duration_s": round(time.monotonic() - t0, 4),
            },
        }
        self._calls = []

    # sandbox hooks
    def on_tool_call(self, call: ToolCall) -> None:
        if call.name.startswith("__dspy"):
            return
        prompt = call.kwargs.get("prompt", call.kwargs.get("prompts"))
        if prompt is None:
            prompt = call.args[0] if len(call.args) == 1 else {"args": call.args, **call.kwargs}
        self._calls.append(
            {
                "tool": call.name,
                "prompt": prompt if isinstance(prompt, str) else _short_json(prompt),
                "response": call.value if isinstance(call.value, str) else _short_json(call.value),
                "duration_s": round(call.duration_s, 4),
                "error": call.error,
            }
        )

    def on_execute(self, code: str, result: Any, error: str | None, duration: float) -> None:
        if self._pending is None:  # dspy's own setup code, not a model step
            return
        pending, self._pending = self._pending, None
        if isinstance(result, FinalOutput):
            output = f"FINAL: {_short_json(result.output)}"
            # dspy refuses a SUBMIT whose values do not parse as the output types and tells
            # the model why; the record must say the same, not FINAL.
            with contextlib.suppress(Exception):
                names = list(self.rlm.signature.output_fields)
                _, problem = self.rlm._process_final_output(result, names)
                if problem:
                    output, error = problem, problem
        else:
            output = error if error is not None else str(result or "")
        self._emit_step(
            pending, code=code, output=output, error=error is not None, duration=duration
        )

    def _flush_unexecuted(self) -> None:
        if self._pending is not None:  # the code never ran (e.g. not parseable as Python)
            pending, self._pending = self._pending, None
            self._emit_step(
                pending,
                code=pending["code"],
                output="(not run: no Python code could be extracted from the answer)",
                error=True,
                duration=0.0,
            )

    def _emit_step(
        self, pending: Record, *, code: str, output: str, error: bool, duration: float
    ) -> None:
        self.steps += 1
        self.emit(
            self.redact.deep(
                {
                    "type": "step",
                    "index": self.steps,
                    "reasoning": pending["reasoning"],
                    "code": code,
                    "output": output,
                    "error": error,
                    "duration_s": round(duration, 4),
                    "lm": pending["lm"],
                    "sub_calls": self._calls,
                }
            )
        )
        self._calls = []


def _short_json(value: Any, limit: int = 20_000) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"


def _describe_inputs(inputs: dict[str, Any]) -> dict[str, Record]:
    out = {}
    for name, value in inputs.items():
        text = value if isinstance(value, str) else _short_json(value, 10**9)
        out[name] = {"type": type(value).__name__, "length": len(text), "preview": text[:200]}
    return out


def run_rlm(
    signature: str | type[dspy.Signature],
    inputs: dict[str, Any],
    *,
    lm: dspy.BaseLM | None = None,
    sub_lm: dspy.BaseLM | None = None,
    sandbox: SandboxOptions | None = None,
    tools: list[Callable] | None = None,
    max_iterations: int = 20,
    max_llm_calls: int = 50,
    max_output_chars: int = 10_000,
    on_record: Callable[[Record], None] | None = None,
    redactor: Redactor | None = None,
    prompt: str = "dspy",
) -> RunResult:
    """Run one RLM task and return its typed outputs with the full trajectory.

    `signature` is a dspy signature ("context, question -> answer: str" or a class);
    `inputs` maps its input fields to values (long contexts stay in the sandbox).
    `on_record` sees each trajectory record as it happens (run, step..., result).
    `prompt` is "dspy" (dspy.RLM's own instructions) or "compact" (short, for small models).
    """
    if prompt not in STYLES:
        raise ValueError(f"unknown prompt style {prompt!r}; choose one of: {', '.join(STYLES)}")
    for name, value in (
        ("max_iterations", max_iterations),
        ("max_llm_calls", max_llm_calls),
        ("max_output_chars", max_output_chars),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    lm = lm or dspy.settings.lm
    if lm is None:
        from fleet_rlm.config import NOT_CONFIGURED

        raise RunError(NOT_CONFIGURED, [])
    planner = lm.copy()  # per-run history: token counts of parallel runs never mix
    sub = (sub_lm or lm).copy()
    options = sandbox or SandboxOptions()
    redact = redactor or Redactor()
    records: list[Record] = []

    def emit(record: Record) -> None:
        records.append(record)
        if on_record is not None:
            on_record(record)

    recorder = _Recorder(None, planner, emit, redact)
    factory = SandboxFactory(
        options, on_tool_call=recorder.on_tool_call, on_execute=recorder.on_execute
    )
    # Built with our factory (not passed per call) so dspy composes its instructions for this
    # runtime once, and a replaced instruction text stays as it is.
    rlm = dspy.RLM(
        signature,
        max_iters=max_iterations,
        max_llm_calls=max_llm_calls,
        max_output_chars=max_output_chars,
        tools=tools,
        sub_lm=sub,
        interpreter_factory=factory,
    )
    recorder.rlm = rlm
    if prompt == "compact":
        action = rlm.generate_action.signature
        text = compact_instructions(rlm.signature, rlm.tools)
        rlm.generate_action.signature = action.with_instructions(text)
        rlm.generate_action.demos = compact_demos(rlm.signature)
    sig = rlm.signature
    emit(
        {
            "type": "run",
            "version": 1,
            "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "signature": _signature_text(sig),
            "instructions": sig.instructions,
            "inputs": redact.deep(_describe_inputs(inputs)),
            "model": getattr(planner, "model", type(planner).__name__),
            "sub_model": getattr(sub, "model", None) if sub_lm is not None else None,
            "backend": options.backend,
            "settings": {
                "prompt": prompt,
                "max_iterations": max_iterations,
                "max_llm_calls": max_llm_calls,
                "timeout_s": options.timeout,
            },
        }
    )
    started = time.monotonic()
    prediction: dspy.Prediction | None = None
    error: str | None = None
    try:
        with dspy.context(lm=planner, callbacks=[*dspy.settings.callbacks, recorder]):
            call_inputs = present_long_inputs(inputs) if prompt == "compact" else inputs
            prediction = rlm(**call_inputs)
        recorder._flush_unexecuted()
    except Exception as exc:  # LM failures, fatal sandbox errors: keep what we have
        error = redact(f"{type(exc).__name__}: {exc}")
    finally:
        for interpreter in factory.created:
            interpreter.shutdown()
    outputs = (
        {name: prediction[name] for name in sig.output_fields} if prediction is not None else None
    )
    prompt, completion = token_usage(planner.history)
    sub_prompt, sub_completion = token_usage(sub.history)
    emit(
        {
            "type": "result",
            "outputs": redact.deep(_jsonable(outputs)) if outputs is not None else None,
            "error": error,
            "final_reasoning": getattr(prediction, "final_reasoning", None),
            "duration_s": round(time.monotonic() - started, 4),
            "iterations": recorder.steps,
            "lm_calls": len(planner.history),
            "sub_lm_calls": len(sub.history),
            "prompt_tokens": _add(prompt, sub_prompt),
            "completion_tokens": _add(completion, sub_completion),
            "restarts": sum(i.restarts for i in factory.created),
            "bytes_to_sandbox": sum(i.bytes_sent for i in factory.created),
        }
    )
    if prediction is None:
        raise RunError(error or "the run failed", records)
    return RunResult(outputs=outputs or {}, prediction=prediction, records=records)


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def _signature_text(sig: type[dspy.Signature]) -> str:
    ins = ", ".join(sig.input_fields)
    outs = ", ".join(sig.output_fields)
    return f"{ins} -> {outs}"
