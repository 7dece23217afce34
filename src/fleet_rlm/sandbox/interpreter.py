"""Host side of the driver protocol: a dspy `CodeInterpreter` over any `Transport`.

Written once for every backend. It sends each input variable only when it changed (large
values streamed in chunks, never as one JSON literal), answers tool calls from the sandbox
concurrently on the host (the sandbox never sees an LM or a key), bounds every message it
reads, and survives a sandbox that hangs, crashes or breaks the protocol: the driver is
killed and restarted, and the model is told that its state was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import inspect
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError, FinalOutput
from dspy.primitives.facade import is_reserved_sandbox_name

from fleet_rlm.sandbox.transport import SandboxStartError, Stream, Transport

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
CHUNK_CHARS = 4 * 1024 * 1024
_EOF = object()

REPEAT_NOTE = (
    "\n[This code is the same as your previous step's, so it printed the same. "
    "Write different code: search for another word, or SUBMIT what you found.]"
)

EXECUTION_INSTRUCTIONS = (
    "Code runs in a persistent, isolated Python sandbox (no network; write files only in the "
    "working directory). Variables and imports persist between steps. Tools and SUBMIT are "
    "global functions; print() output is shown to you, truncated when very long."
)


@dataclass
class ToolCall:
    """One sandbox -> host tool call, as observers (trajectories, benchmarks) see it."""

    name: str
    args: list
    kwargs: dict
    started: float
    duration_s: float = 0.0
    value: Any = None
    error: str | None = None


@dataclass
class _Violation:
    reason: str


class _Calls:
    """The tool calls of one `execute`: which were answered, and how long any was in flight.

    Time with a host tool call in flight is the tool's (bounded by `tool_timeout`); all other
    time is the sandbox's and counts against `timeout`, however many tool calls it makes.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered: set = set()
        self.active = 0
        self.since = 0.0
        self.busy = 0.0

    def begin(self) -> None:
        with self.lock:
            if self.active == 0:
                self.since = time.monotonic()
            self.active += 1

    def answer(self, call_id: Any) -> bool:
        """Mark a call answered; False if it already was (a late result after its timeout)."""
        with self.lock:
            if call_id in self.answered:
                return False
            self.answered.add(call_id)
            self.active -= 1
            if self.active == 0:
                self.busy += time.monotonic() - self.since
            return True

    def busy_time(self) -> float:
        with self.lock:
            return self.busy + (time.monotonic() - self.since if self.active else 0.0)


def _invalid(msg: dict) -> str | None:
    """Why a message from the sandbox is malformed, or None; the host checks each one."""
    kind = msg.get("type")
    if kind == "tool_call":
        if type(msg.get("id")) not in (int, str):
            return "a tool call with an invalid id"
        if not isinstance(msg.get("name"), str) or not isinstance(msg.get("args", []), list):
            return "a malformed tool call"
        if not isinstance(msg.get("kwargs", {}), dict):
            return "a malformed tool call"
    elif kind == "done":
        status, error = msg.get("status"), msg.get("error", {})
        if status not in ("ok", "final", "error") or type(msg.get("truncated", 0)) is not int:
            return "a malformed result"
        if not isinstance(msg.get("output", ""), str) or not isinstance(error, dict):
            return "a malformed result"
        if not all(isinstance(v, str) for v in error.values()):
            return "a malformed result"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _clean_text(value: Any) -> Any:
    """Lone surrogates (from JSON escapes) become U+FFFD, so every string encodes as UTF-8."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_clean_text(v) for v in value]
    if isinstance(value, dict):
        return {_clean_text(k): _clean_text(v) for k, v in value.items()}
    return value


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [truncated: {len(text) - limit:,} more characters not shown]"


class _SandboxLost(Exception):
    """The driver is gone or unusable; the caller restarts it."""


@dataclass
class _Sent:
    ref: Any
    digest: bytes | None = None
    extra: dict = field(default_factory=dict)

    def same(self, value: Any) -> bool:
        if value is self.ref:
            return True
        if isinstance(value, str) or isinstance(self.ref, str):
            return type(value) is type(self.ref) and value == self.ref
        return self.digest is not None and _digest(_encode_json(value)) == self.digest


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return str(value)


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, default=_json_default).encode("utf-8")


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def to_jsonable(value: Any) -> Any:
    """Tool results must cross the boundary as JSON; say clearly when one cannot."""
    try:
        return json.loads(json.dumps(value, default=_strict_default))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the tool returned a value that is not JSON-compatible: {exc}") from None


def _strict_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _invoke(fn: Callable, args: list, kwargs: dict) -> Any:
    """Call a host tool with positional or keyword arguments.

    dspy wraps user tools as `invoke(**kwargs)` carrying the original `__signature__`,
    so positional arguments are bound by name first.
    """
    if args:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        plain = sig is not None and all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in sig.parameters.values()
        )
        if plain:
            kwargs = dict(sig.bind(*args, **kwargs).arguments)
            args = []
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


class SandboxInterpreter:
    """A dspy `CodeInterpreter` whose code runs in a fleet-rlm sandbox driver.

    Args:
        transport: starts the driver process (local subprocess, Modal sandbox, ...).
        tools: host functions callable from sandboxed code by name.
        output_fields: `[{"name": ..., "type": ...}]` for SUBMIT; dspy.RLM sets this.
        timeout: seconds one `execute` may compute; time spent waiting on host tools
            does not count (tools have `tool_timeout`). Past it the driver is restarted.
        max_output_chars: output kept per `execute`; the rest is counted and marked.
    """

    execution_instructions = EXECUTION_INSTRUCTIONS

    def __init__(
        self,
        transport: Transport,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict] | None = None,
        *,
        timeout: float = 120.0,
        tool_timeout: float = 600.0,
        start_timeout: float = 60.0,
        max_output_chars: int = 100_000,
        max_message_bytes: int = 32 * 1024 * 1024,
        tool_workers: int = 16,
        on_tool_call: Callable[[ToolCall], None] | None = None,
        on_execute: Callable[[str, Any, str | None, float], None] | None = None,
    ) -> None:
        for name, value in (
            ("timeout", timeout),
            ("tool_timeout", tool_timeout),
            ("start_timeout", start_timeout),
            ("max_output_chars", max_output_chars),
            ("max_message_bytes", max_message_bytes),
            ("tool_workers", tool_workers),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.transport = transport
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.timeout = timeout
        self.tool_timeout = tool_timeout
        self.start_timeout = start_timeout
        self.max_output_chars = max_output_chars
        self.max_message_bytes = max_message_bytes
        self.on_tool_call = on_tool_call
        self.on_execute = on_execute
        self.bytes_sent = 0
        self.restarts = 0
        self.isolation: dict = {}
        self._pool = ThreadPoolExecutor(tool_workers, thread_name_prefix="fleet-rlm-tool")
        self._stream: Stream | None = None
        self._inbox: queue.Queue = queue.Queue()
        self._send_lock = threading.Lock()
        self._exec_lock = threading.Lock()
        self._sent: dict[str, _Sent] = {}
        self._sent_tools: list | None = None
        self._sent_fields: list | None = None
        self._setup_log: list[tuple[str, dict]] = []
        self._next_id = 0
        self._closed = False
        self._last_code: str | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._closed:
            raise CodeInterpreterError("this sandbox was shut down; create a new interpreter")
        if self._stream is not None:
            return
        try:
            stream = self.transport.start()
        except SandboxStartError as exc:
            raise CodeInterpreterError(str(exc)) from exc
        self._stream, self._inbox = stream, queue.Queue()
        self._sent.clear()
        self._sent_tools = self._sent_fields = None
        threading.Thread(
            target=self._read_loop, args=(stream, self._inbox), name="fleet-rlm-reader", daemon=True
        ).start()
        config = {
            "type": "config",
            "max_output_chars": self.max_output_chars,
            "max_message_bytes": self.max_message_bytes,
        }
        config.update(self.transport.driver_config())
        try:
            self._send(config)
            hello = self._inbox.get(timeout=self.start_timeout)
        except (OSError, queue.Empty) as exc:
            hello = exc
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            reason = self.transport.exit_reason()
            self._drop_stream()
            raise CodeInterpreterError(f"the {self.transport.name} sandbox did not start: {reason}")
        if hello.get("protocol") != PROTOCOL_VERSION:
            self._drop_stream()
            raise CodeInterpreterError(
                f"sandbox driver speaks protocol {hello.get('protocol')}, host speaks "
                f"{PROTOCOL_VERSION}; reinstall fleet-rlm so both sides match"
            )
        self.isolation = hello.get("isolation") or {}
        network = str(self.isolation.get("network", ""))
        if "failed" in network or "unsupported" in network:
            log.warning("sandbox network isolation is off: %s", network)
        for warning in self.isolation.get("warnings", []):
            log.warning("sandbox isolation: %s", warning)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._send({"type": "shutdown"})
        self._drop_stream()
        self.transport.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> SandboxInterpreter:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.shutdown()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    # -- execute ----------------------------------------------------------------------------------

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        if not isinstance(code, str):
            raise CodeInterpreterError("code must be a string")
        if not self._exec_lock.acquire(blocking=False):
            raise CodeInterpreterError("this sandbox is already running code")
        started = time.monotonic()
        result: Any = None
        error: str | None = None
        try:
            self.start()
            variables = dict(variables or {})
            try:
                result = self._run(code, variables)
            except _SandboxLost as lost:
                self._restart()
                raise CodeExecutionError(
                    f"{lost} The sandbox was restarted: every variable you defined is gone "
                    "(the inputs are loaded again). Redo what you need, in smaller steps."
                ) from None
            except (CodeExecutionError, SyntaxError) as exc:
                error = str(exc)
                raise
            if isinstance(result, str) and code.strip() == self._last_code:
                # A model stuck in a loop (greedy decoding) sees why nothing changes.
                result += REPEAT_NOTE
            self._last_code = code.strip()
            if any(is_reserved_sandbox_name(n) or n.startswith("_raw_") for n in variables):
                # dspy's own setup (the sandbox `dspy` facade, serialized inputs): replayed
                # after a restart so the model keeps what dspy promised it.
                self._setup_log.append((code, variables))
            return result
        except CodeExecutionError as exc:
            error = error or str(exc)
            raise
        finally:
            self._exec_lock.release()
            if self.on_execute is not None:
                with contextlib.suppress(Exception):
                    self.on_execute(code, result, error, time.monotonic() - started)

    def _run(self, code: str, variables: dict[str, Any]) -> Any:
        self._sync_variables(variables)
        self._next_id += 1
        exec_id = self._next_id
        msg: dict[str, Any] = {"type": "execute", "id": exec_id, "code": code}
        tools = [{"name": n, "doc": _first_line(f)} for n, f in self.tools.items()]
        if tools != self._sent_tools:
            msg["tools"] = self._sent_tools = tools
        if self.output_fields != self._sent_fields:
            msg["output_fields"] = self._sent_fields = self.output_fields
        self._send(msg)
        return self._wait(exec_id)

    def _wait(self, exec_id: int) -> Any:
        stream = self._stream
        pending: dict[Any, tuple[Future, ToolCall]] = {}  # tool calls not answered yet
        calls = _Calls()
        started = time.monotonic()
        while True:
            now = time.monotonic()
            for call_id, (fut, call) in list(pending.items()):
                if fut.done():
                    del pending[call_id]
                elif now - call.started > self.tool_timeout:
                    del pending[call_id]
                    self._answer(
                        stream,
                        call_id,
                        calls,
                        {
                            "type": "tool_error",
                            "id": call_id,
                            "error": f"TimeoutError: tool {call.name} gave no answer within "
                            f"{self.tool_timeout:g} s",
                        },
                    )
            left = self.timeout - (now - started - calls.busy_time())
            if left <= 0:
                raise _SandboxLost(
                    f"TimeoutError: the code ran for more than {self.timeout:g} s and was stopped."
                )
            try:
                msg = self._inbox.get(timeout=0.05 if pending else min(left, 0.5))
            except queue.Empty:
                continue
            if msg is _EOF:
                raise _SandboxLost(
                    f"SandboxCrashed: {self.transport.exit_reason()} while running your code."
                )
            if isinstance(msg, _Violation):
                raise _SandboxLost(f"ProtocolError: the sandbox sent {msg.reason}.")
            kind = msg.get("type")
            if kind == "tool_call":
                if msg.get("id") in pending or msg.get("id") in calls.answered:
                    raise _SandboxLost(
                        f"ProtocolError: the sandbox reused tool call id {msg.get('id')!r}."
                    )
                call = ToolCall(
                    name=str(msg.get("name")),
                    args=list(msg.get("args") or []),
                    kwargs=dict(msg.get("kwargs") or {}),
                    started=time.monotonic(),
                )
                call_id = msg.get("id")
                ctx = contextvars.copy_context()
                calls.begin()
                fut = self._pool.submit(ctx.run, self._serve_tool, stream, call_id, call, calls)
                pending[call_id] = (fut, call)
            elif kind == "done" and msg.get("id") == exec_id:
                return self._result(msg)
            # anything else (a stale or forged message) is ignored

    def _result(self, msg: dict) -> Any:
        status = msg.get("status")
        output = _clip(str(msg.get("output") or ""), self.max_output_chars)
        truncated = msg.get("truncated") or 0
        if truncated:
            output += f"\n... [output truncated: {truncated:,} more characters not shown]"
        if status == "final":
            value = msg.get("value")
            if not isinstance(value, dict):
                raise CodeExecutionError("SUBMIT produced no outputs")
            return FinalOutput(value)
        if status == "error":
            err = msg.get("error") or {}
            etype = _clip(str(err.get("type", "Error")), 200)
            message = _clip(str(err.get("message", "")), self.max_output_chars)
            if etype == "SyntaxError":
                raise SyntaxError(message)
            text = f"{etype}: {message}"
            tb = _clip(str(err.get("traceback") or ""), self.max_output_chars).rstrip()
            if tb:
                text = f"Traceback (most recent call last):\n{tb}\n{text}"
            if output:
                text = f"{output.rstrip()}\n{text}"
            raise CodeExecutionError(text)
        return output

    # -- tools ------------------------------------------------------------------------------------

    def _serve_tool(self, stream: Stream, call_id: Any, call: ToolCall, calls: _Calls) -> None:
        try:
            fn = self.tools.get(call.name)
            if fn is None:
                raise NameError(f"no tool named {call.name!r}")
            call.value = to_jsonable(_invoke(fn, call.args, call.kwargs))
            reply = {"type": "tool_result", "id": call_id, "value": call.value}
        except Exception as exc:
            call.error = f"{type(exc).__name__}: {exc}"
            reply = {"type": "tool_error", "id": call_id, "error": call.error}
        call.duration_s = time.monotonic() - call.started
        if self.on_tool_call is not None:
            with contextlib.suppress(Exception):
                self.on_tool_call(call)
        self._answer(stream, call_id, calls, reply)

    def _answer(self, stream: Stream, call_id: Any, calls: _Calls, reply: dict) -> None:
        if not calls.answer(call_id):
            return
        if stream is self._stream:
            with contextlib.suppress(OSError, ValueError):
                self._send(reply)

    # -- variables --------------------------------------------------------------------------------

    def _sync_variables(self, variables: dict[str, Any]) -> None:
        """Send a variable only when the sandbox does not hold it already (context sent once)."""
        for name, value in variables.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise CodeInterpreterError(f"variable name {name!r} is not a Python identifier")
            if name in self.tools or name == "SUBMIT":
                raise CodeInterpreterError(f"variable {name!r} would replace a sandbox function")
            sent = self._sent.get(name)
            if sent is not None and sent.same(value):
                continue
            self._sent[name] = self._put(name, value)

    def _put(self, name: str, value: Any) -> _Sent:
        if isinstance(value, str):
            header = {"type": "put", "name": name, "encoding": "str"}
            chunks = (
                value[i : i + CHUNK_CHARS].encode("utf-8", "surrogatepass")
                for i in range(0, len(value), CHUNK_CHARS)
            )
            sent = _Sent(value)
        else:
            data = _encode_json(value)
            header = {"type": "put", "name": name, "encoding": "json"}
            chunks = (data[i : i + CHUNK_CHARS] for i in range(0, len(data), CHUNK_CHARS))
            sent = _Sent(value, _digest(data))
        path = self._stage(name, value if isinstance(value, str) else data, header["encoding"])
        if path is not None:  # the driver reads the bytes from that file: nothing to stream
            self._send({**header, "path": path})
            return sent
        with self._send_lock:
            self._write(_line(header))
            for chunk in chunks:
                self._write(b"%d\n" % len(chunk))
                self._write(chunk)
            self._write(b"0\n")
        return sent

    def _stage(self, name: str, value: str | bytes, encoding: str) -> str | None:
        """Optional transport hook: put a large value in a file the driver can read (Modal)."""
        stage = getattr(self.transport, "stage_value", None)
        if stage is None:
            return None
        try:
            return stage(name, value, encoding)
        except Exception as exc:  # staging is an optimisation: fall back to streaming
            log.warning("could not stage %s as a file (%s); streaming it", name, exc)
            return None

    # -- plumbing ---------------------------------------------------------------------------------

    def _send(self, msg: dict) -> None:
        with self._send_lock:
            self._write(_line(msg))

    def _write(self, data: bytes) -> None:
        if self._stream is None:
            raise _SandboxLost("SandboxCrashed: the sandbox is not running.")
        try:
            self._stream.write(data)
        except (OSError, ValueError) as exc:
            raise _SandboxLost(f"SandboxCrashed: writing to the sandbox failed ({exc}).") from None
        self.bytes_sent += len(data)

    def _read_loop(self, stream: Stream, inbox: queue.Queue) -> None:
        limit = self.max_message_bytes
        while True:
            try:
                line = stream.readline(limit + 1)
            except (OSError, ValueError):
                line = b""
            if not line:
                inbox.put(_EOF)
                return
            if len(line) > limit:
                inbox.put(_Violation(f"a message over {limit:,} bytes"))
                return
            try:
                # invalid UTF-8 and encoded lone surrogates become U+FFFD: host strings encode
                text = line.decode("utf-8", "replace")
                msg = json.loads(text)
                if isinstance(msg, dict) and _SURROGATE_ESCAPE.search(text):
                    msg = _clean_text(msg)  # escaped lone surrogates too
            except ValueError:
                if not line.endswith(b"\n"):
                    inbox.put(_EOF)  # cut off by the process ending
                else:
                    inbox.put(_Violation(f"a line that is not JSON: {line[:80]!r}"))
                return
            if not isinstance(msg, dict):
                inbox.put(_Violation("a message that is not a JSON object"))
                return
            reason = _invalid(msg)
            if reason is not None:
                inbox.put(_Violation(reason))
                return
            inbox.put(msg)

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        self.transport.kill()
        if stream is not None:
            stream.close()

    def _restart(self) -> None:
        self.restarts += 1
        self._drop_stream()
        self.start()
        for code, variables in self._setup_log:
            try:
                self._run(code, variables)
            except (_SandboxLost, CodeExecutionError) as exc:
                raise CodeInterpreterError(f"the sandbox could not be restored: {exc}") from exc


def _line(msg: dict) -> bytes:
    return (json.dumps(msg, ensure_ascii=False, default=_json_default) + "\n").encode(
        "utf-8", "surrogatepass"
    )


def _first_line(fn: Callable) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.strip().split("\n\n")[0][:500]
