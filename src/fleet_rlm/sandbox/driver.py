"""fleet-rlm sandbox driver: runs model-written Python for the host over a private channel.

Standard library only, Python >= 3.10, so the same file runs unchanged in every backend
(a local subprocess, a Modal sandbox, ...). The host starts it with stdin/stdout as pipes.

Protocol (version 1), newline-delimited JSON with raw payload frames:
  host -> driver  {"type": "config", ...}                      first line: isolation + limits
                  {"type": "put", "name", "encoding"}          then chunks b"<n>\\n<n bytes>",
                                                               ended by b"0\\n"
                  {"type": "put", "name", "encoding", "path"}  no chunks: the value's bytes
                                                               are in that file (staged by
                                                               the host, e.g. a Modal volume)
                  {"type": "execute", "id", "code", "tools"?, "output_fields"?}
                  {"type": "tool_result"|"tool_error", "id", "value"|"error"}
                  {"type": "shutdown"}
  driver -> host  {"type": "hello", "protocol", "python", "isolation", "pid"}
                  {"type": "tool_call", "id", "name", "args", "kwargs"}
                  {"type": "done", "id", "status": "ok"|"final"|"error", "output",
                   "truncated", "value"?, "error"?}

The channel is a private duplicate of the original stdin/stdout. Before any user code runs,
fds 0/1/2 are replaced (stdin by /dev/null, stdout/stderr by a capture pipe), and sys.stdout,
sys.__stdout__ etc. by capture sinks, so printing, writing to fd 1 or closing stdin cannot
reach or break the channel.
"""

from __future__ import annotations

import ast
import builtins
import codecs
import contextlib
import fcntl
import io
import itertools
import json
import linecache
import os
import queue
import re
import select
import signal
import struct
import sys
import termios
import threading
import traceback

PROTOCOL_VERSION = 1
_DRIVER_FILE = os.path.abspath(__file__) if "__file__" in globals() else "<driver>"

# ---------------------------------------------------------------------------------------------
# Isolation (applied before any user code runs; each step reports what it achieved)
# ---------------------------------------------------------------------------------------------

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000,
    0x10000000,
    0x20000000,
    0x40000000,
)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1,
    2,
    4,
    32,
    4096,
    16384,
    1 << 18,
)


def _libc():
    import ctypes  # only when isolating: importing ctypes.util alone costs ~9 ms of start

    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc, src: str, target: str, fstype: str | None, flags: int, data: str | None = None):
    import ctypes

    _check(
        libc.mount(
            src.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _python_paths() -> list[str]:
    """Folders the running Python needs after masking: its install, venv and sys.path."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths |= {p for p in sys.path if p}
    paths.add(os.path.dirname(_DRIVER_FILE))
    found = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})
    return [p for p in found if not any(_inside(p, q) for q in found if q != p)]  # outermost


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _isolate(cfg: dict) -> dict:
    """Enter namespaces, mask paths, drop privileges and set rlimits, as the config asks.

    Returns a report of what was applied; failures are reported, never silent.
    """
    report: dict = {}
    workdir = cfg.get("workdir")
    if workdir:
        os.chdir(workdir)
    if cfg.get("namespaces") and sys.platform.startswith("linux"):
        try:
            libc = _libc()
            uid, gid = os.getuid(), os.getgid()
            flags = _CLONE_NEWNS | _CLONE_NEWPID | (0 if cfg.get("network") else _CLONE_NEWNET)
            if uid != 0:
                flags |= _CLONE_NEWUSER
            _check(libc.unshare(flags), "unshare")
            if uid != 0:
                with open("/proc/self/setgroups", "w") as f:
                    f.write("deny")
                with open("/proc/self/uid_map", "w") as f:
                    f.write(f"0 {uid} 1")
                with open("/proc/self/gid_map", "w") as f:
                    f.write(f"0 {gid} 1")
            # A new PID namespace takes effect for children: fork, and let the child be PID 1.
            child = os.fork()
            if child:
                _wait_and_exit(child)
            _mount(libc, "none", "/", None, _MS_REC | _MS_PRIVATE)
            _mount(libc, "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV)
            work_fd = os.open(workdir or ".", os.O_RDONLY)
            keep = {p: os.open(p, os.O_RDONLY) for p in _python_paths()}
            masked = []
            for path in cfg.get("mask_paths", []):
                try:
                    # an empty tmpfs over folders, /dev/null over files
                    if os.path.isdir(path):
                        opts = "size=16m,mode=755"
                        _mount(libc, "tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, opts)
                    elif os.path.exists(path):
                        _mount(libc, "/dev/null", path, None, _MS_BIND)
                    else:
                        continue
                    masked.append(path)
                except OSError as exc:
                    report.setdefault("warnings", []).append(str(exc))
            # What Python itself needs (stdlib, site-packages) comes back read-only.
            for path, fd in keep.items():
                if any(_inside(path, m) for m in masked):
                    os.makedirs(path, exist_ok=True)
                    _mount(libc, f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
                    _mount(libc, "none", path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
                os.close(fd)
            # Re-binding brought back whatever those folders hold: mask the listed files and
            # any top-level .env again (a flat-layout project on sys.path keeps its .env there).
            files = [p for p in cfg.get("mask_paths", []) if p not in masked]
            for folder in keep:
                with contextlib.suppress(OSError):
                    files += [
                        os.path.join(folder, n)
                        for n in os.listdir(folder)
                        if n == ".env" or n.startswith(".env.")
                    ]
            for path in files:
                if os.path.isfile(path) and path not in masked:
                    try:
                        _mount(libc, "/dev/null", path, None, _MS_BIND)
                        masked.append(path)
                    except OSError as exc:
                        report.setdefault("warnings", []).append(str(exc))
            if workdir:
                # The workdir may sit under a masked path: bind it back at its own path.
                os.makedirs(workdir, exist_ok=True)
                _mount(libc, f"/proc/self/fd/{work_fd}", workdir, None, _MS_BIND)
                os.chdir(workdir)
            os.close(work_fd)
            network = "host network (allowed)" if cfg.get("network") else "none (namespace)"
            report.update(network=network, pid_namespace=True, masked=masked)
        except OSError as exc:
            report["network"] = f"host network (isolation failed: {exc})"
    elif cfg.get("namespaces"):
        report["network"] = f"host network (namespaces unsupported on {sys.platform})"
    sandbox_uid = cfg.get("uid")
    if sandbox_uid is not None and os.getuid() == 0:
        try:
            os.setgroups([])
            os.setgid(sandbox_uid)
            os.setuid(sandbox_uid)
            report["uid"] = sandbox_uid
        except OSError as exc:
            report.setdefault("warnings", []).append(f"could not drop privileges: {exc}")
    report["rlimits"] = _set_rlimits(cfg.get("rlimits", {}))
    return report


def _set_rlimits(limits: dict) -> dict:
    import resource

    applied = {}
    for name, value in limits.items():
        res = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if res is None or value is None:
            continue
        try:
            resource.setrlimit(res, (value, value))
            applied[name] = value
        except (ValueError, OSError):
            soft, hard = resource.getrlimit(res)
            if hard != resource.RLIM_INFINITY and value > hard:
                resource.setrlimit(res, (hard, hard))
                applied[name] = hard
    return applied


def _wait_and_exit(child: int) -> None:
    """The pre-fork process only relays the exit status of the namespaced driver."""
    os.closerange(0, 65536)  # hold no end of the channel, so the host sees EOF when it ends
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else 1)


# ---------------------------------------------------------------------------------------------
# Channel
# ---------------------------------------------------------------------------------------------


class MessageTooLarge(ValueError):
    """A message would exceed the host's per-message limit (the host would drop the sandbox)."""


class Channel:
    """The private protocol channel: duplicated fds that user code is never handed."""

    def __init__(self) -> None:
        self.rfile = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
        self.wfd = os.dup(1)
        self.lock = threading.Lock()
        self.max_bytes = 32 * 1024 * 1024  # the host's limit, from the config message

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg, ensure_ascii=False, default=_json_default) + "\n").encode(
            "utf-8", "surrogatepass"
        )
        if len(data) > self.max_bytes:
            raise MessageTooLarge(f"{len(data):,} bytes; the limit is {self.max_bytes:,}")
        with self.lock:
            view = memoryview(data)
            while view:
                n = os.write(self.wfd, view)
                view = view[n:]

    def recv(self) -> dict | None:
        line = self.rfile.readline()
        if not line:
            return None
        return json.loads(line)

    def read_exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if data is None or len(data) != n:
            raise EOFError("channel closed inside a payload")
        return data

    def read_payload(self) -> list[bytes]:
        chunks = []
        while True:
            size = int(self.rfile.readline())
            if size == 0:
                return chunks
            chunks.append(self.read_exact(size))


def _json_default(value):
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"value of type {type(value).__name__} is not JSON-serializable")


# ---------------------------------------------------------------------------------------------
# Output capture: bounded, for Python-level writes and for fd 1/2 (C code, subprocesses)
# ---------------------------------------------------------------------------------------------


class Capture:
    """Keeps the first `limit` characters of output and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        room = self.limit - self.size
        if room >= len(text):
            self.parts.append(text)
            self.size += len(text)
        else:
            if room > 0:
                self.parts.append(text[:room])
                self.size += room
            self.dropped += len(text) - max(room, 0)

    def take(self) -> tuple[str, int]:
        text, dropped = "".join(self.parts), self.dropped
        self.reset()
        return text, dropped


class Sink(io.TextIOBase):
    """What sys.stdout / sys.stderr / sys.__stdout__ point at inside the sandbox."""

    def __init__(self, capture: Capture, fd: int) -> None:
        self._capture, self._fd = capture, fd

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with self._capture.lock:
            self._capture.add(s)
        return len(s)

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


class FdDrain:
    """Drains a pipe that fds 1 and 2 point at, so C-level writes are captured and bounded."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.rfd, self.wfd = os.pipe()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        threading.Thread(target=self._run, name="fleet-rlm-drain", daemon=True).start()

    def _run(self) -> None:
        while True:
            select.select([self.rfd], [], [])
            with self.capture.lock:
                data = os.read(self.rfd, 1 << 16)
                if not data:
                    return
                self.capture.add(self.decoder.decode(data))

    def pending(self) -> int:
        buf = fcntl.ioctl(self.rfd, termios.FIONREAD, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]

    def settle(self) -> None:
        """Wait until everything written to the pipe so far sits in the capture."""
        while True:
            with self.capture.lock:
                if self.pending() == 0:
                    return
            select.select([], [], [], 0.0005)


# ---------------------------------------------------------------------------------------------
# The REPL session
# ---------------------------------------------------------------------------------------------


class _Submit(BaseException):
    """Raised by SUBMIT to end the code block; a BaseException so `except Exception` misses it."""

    def __init__(self, values: dict) -> None:
        self.values = values


class ToolError(RuntimeError):
    """A host tool failed; the message is the host's error."""


class Driver:
    def __init__(self, channel: Channel, max_output_chars: int) -> None:
        self.channel = channel
        self.capture = Capture(max_output_chars)
        self.drain = FdDrain(self.capture)
        self.commands: queue.Queue = queue.Queue()
        self.pending: dict[int, queue.Queue] = {}
        self.pending_lock = threading.Lock()
        self.call_ids = itertools.count(1)
        # `re` is there from the start: models reach for it first, and often forget the import.
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins, "re": re}
        self.tool_names: list[str] = []
        self.output_fields: list[dict] = []
        self.submitted: dict | None = None
        self.load_errors: list[str] = []
        self.cell = 0
        self.stdout = Sink(self.capture, 1)
        self.stderr = Sink(self.capture, 2)
        self.namespace["SUBMIT"] = self.submit
        self._redirect_fds()
        threading.Thread(target=self._read_loop, name="fleet-rlm-channel", daemon=True).start()

    # -- plumbing -------------------------------------------------------------------------------

    def _redirect_fds(self) -> None:
        """Point fds 0/1/2 and every sys stream away from the channel (again before each cell)."""
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(self.drain.wfd, 1)
        os.dup2(self.drain.wfd, 2)
        sys.stdout = sys.__stdout__ = self.stdout
        sys.stderr = sys.__stderr__ = self.stderr
        sys.stdin = sys.__stdin__ = io.StringIO("")

    def _read_loop(self) -> None:
        try:
            while True:
                msg = self.channel.recv()
                if msg is None:
                    break
                kind = msg.get("type")
                if kind in ("tool_result", "tool_error"):
                    with self.pending_lock:
                        waiter = self.pending.pop(msg.get("id"), None)
                    if waiter is not None:
                        waiter.put(msg)
                elif kind == "put":
                    payload = [] if msg.get("path") else self.channel.read_payload()
                    self.commands.put({"type": "put", "msg": msg, "payload": payload})
                else:
                    self.commands.put(msg)
        except Exception as exc:  # a broken channel ends the driver
            self.commands.put({"type": "fatal", "error": f"{type(exc).__name__}: {exc}"})
            return
        self.commands.put(None)

    def call_tool(self, name: str, args: tuple, kwargs: dict):
        call_id = next(self.call_ids)
        waiter: queue.Queue = queue.Queue(maxsize=1)
        with self.pending_lock:
            self.pending[call_id] = waiter
        try:
            msg = {"type": "tool_call", "id": call_id, "name": name, "args": args, "kwargs": kwargs}
            self.channel.send(msg)
        except TypeError as exc:
            with self.pending_lock:
                self.pending.pop(call_id, None)
            raise TypeError(f"{name}(): arguments must be JSON-compatible ({exc})") from None
        except MessageTooLarge as exc:
            with self.pending_lock:
                self.pending.pop(call_id, None)
            raise ValueError(f"{name}(): the arguments are too large to send ({exc})") from None
        reply = waiter.get()
        if reply["type"] == "tool_error":
            raise ToolError(reply.get("error", "tool failed"))
        return reply.get("value")

    def _make_tool(self, name: str, doc: str):
        def tool(*args, **kwargs):
            return self.call_tool(name, args, kwargs)

        tool.__name__ = tool.__qualname__ = name
        tool.__doc__ = doc
        return tool

    # -- SUBMIT -----------------------------------------------------------------------------------

    def submit(self, *args, **kwargs):
        """End the run with the final outputs: SUBMIT(field1, field2) or SUBMIT(field1=...)."""
        names = [f["name"] for f in self.output_fields] or ["output"]
        usage = f"SUBMIT({', '.join(names)})"
        one_dict = len(args) == 1 and not kwargs and isinstance(args[0], dict)
        if one_dict and len(names) > 1 and set(args[0]) == set(names):
            args, kwargs = (), dict(args[0])  # SUBMIT({"a": .., "b": ..}) is a common slip
        if len(args) > len(names):
            raise TypeError(
                f"SUBMIT takes {len(names)} value(s) but {len(args)} were given; use {usage}"
            )
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(
                    f"SUBMIT got an unexpected field {key!r}; the output fields are: "
                    f"{', '.join(names)}"
                )
            if key in values:
                raise TypeError(f"SUBMIT got two values for {key!r}")
            values[key] = value
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"SUBMIT is missing {', '.join(missing)}; use {usage}")
        try:
            values = json.loads(json.dumps(values, default=_json_default))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"SUBMIT values must be JSON-compatible: {exc}") from None
        if self.submitted is None:
            self.submitted = values
        raise _Submit(values)

    # -- execution --------------------------------------------------------------------------------

    def configure(self, msg: dict) -> None:
        if "tools" in msg:
            for name in self.tool_names:
                self.namespace.pop(name, None)
            self.tool_names = []
            for spec in msg["tools"]:
                self.namespace[spec["name"]] = self._make_tool(spec["name"], spec.get("doc", ""))
                self.tool_names.append(spec["name"])
        if "output_fields" in msg:
            self.output_fields = msg["output_fields"] or []
        self.namespace["SUBMIT"] = self.submit

    def execute(self, msg: dict) -> dict:
        self.configure(msg)
        self.namespace.update(msg.get("variables") or {})
        self._redirect_fds()
        self.submitted = None
        self.cell += 1
        filename = f"<cell {self.cell}>"
        code = msg["code"]
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        result: dict = {"type": "done", "id": msg["id"], "status": "ok"}
        try:
            if self.load_errors:  # a staged input file could not be read (see put)
                errors, self.load_errors = self.load_errors, []
                raise OSError("; ".join(errors))
            tree = ast.parse(code, filename, "exec")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace)
                if value is not None:
                    self.stdout.write(repr(value) + "\n")
        except _Submit:
            pass
        except SyntaxError as exc:
            result.update(status="error", error=_syntax_error(exc))
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the REPL survives them
            result.update(status="error", error=_describe(exc))
        if self.submitted is not None:
            result = {"type": "done", "id": msg["id"], "status": "final", "value": self.submitted}
        if "error" in result:
            for key in ("message", "traceback"):
                result["error"][key] = _clip(result["error"][key], self.capture.limit)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self.drain.settle()
        result["output"], result["truncated"] = self.capture.take()
        return result

    def put(self, msg: dict, chunks: list[bytes]) -> None:
        """Bind a variable from its payload; str chunks are char-aligned, decoded one by one."""
        self.namespace.pop(msg["name"], None)  # drop the old value before building the new one
        if msg.get("path"):
            try:
                with open(msg["path"], "rb") as f:
                    chunks = [f.read()]
            except OSError as exc:
                self.load_errors.append(f"input {msg['name']!r} could not be loaded: {exc}")
                return
        if msg.get("encoding") == "json":
            value = json.loads(b"".join(chunks))
        else:
            chunks.reverse()
            parts = []
            while chunks:
                parts.append(chunks.pop().decode("utf-8", "surrogatepass"))
            value = "".join(parts)
            del parts
        self.namespace[msg["name"]] = value

    def serve(self) -> int:
        while True:
            msg = self.commands.get()
            if msg is None or msg.get("type") == "shutdown":
                return 0
            kind = msg.get("type")
            if kind == "put":
                self.put(msg["msg"], msg.pop("payload"))
            elif kind == "execute":
                result = self.execute(msg)
                try:
                    self.channel.send(result)
                except MessageTooLarge as exc:  # a huge SUBMIT value: an error, not a lost sandbox
                    error = {
                        "type": "ValueError",
                        "traceback": "",
                        "message": (
                            f"the result is too large to send to the host ({exc}); submit less"
                        ),
                    }
                    self.channel.send(
                        {
                            "type": "done",
                            "id": msg["id"],
                            "status": "error",
                            "output": result.get("output", ""),
                            "truncated": result.get("truncated", 0),
                            "error": error,
                        }
                    )
            elif kind == "fatal":
                return 3


def _describe(exc: BaseException) -> dict:
    """Type, message and the user-code part of the traceback (driver frames dropped)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != _DRIVER_FILE][-8:]
    tb = "".join(traceback.format_list(frames))
    try:
        message = str(exc) if not isinstance(exc, SystemExit) else f"exit code {exc.code}"
    except BaseException:  # an exception whose __str__ fails must not take the driver down
        message = "<the exception message could not be shown>"
    return {"type": type(exc).__name__, "message": message, "traceback": tb}


def _clip(text: str, limit: int) -> str:
    """Error texts are bounded like output (a KeyError on a 50 MB key is still one line)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [truncated: {len(text) - limit:,} more characters not shown]"


def _syntax_error(exc: SyntaxError) -> dict:
    lines = traceback.format_exception_only(type(exc), exc)
    return {"type": "SyntaxError", "message": "".join(lines).strip(), "traceback": ""}


def main() -> int:
    channel = Channel()
    first = channel.recv()
    cfg = first if first and first.get("type") == "config" else {}
    report = _isolate(cfg) if cfg else {}
    channel.max_bytes = int(cfg.get("max_message_bytes", channel.max_bytes))
    # Oversized files raise EFBIG instead of killing the process with SIGXFSZ.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    driver = Driver(channel, int(cfg.get("max_output_chars", 100_000)))
    channel.send(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "python": sys.version.split()[0],
            "pid": os.getpid(),
            "isolation": report,
        }
    )
    return driver.serve()


if __name__ == "__main__":
    os._exit(main())
