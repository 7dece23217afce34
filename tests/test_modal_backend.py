"""The Modal backend against a fake Modal SDK whose sandboxes run the real driver locally.

The end-to-end RLM suite runs on this backend too (conftest BACKENDS); these tests cover
what is Modal-specific: what the sandbox is created with, sandbox reuse across restarts,
inputs staged as files (sandbox or volume) instead of streamed, volume helpers, batch runs,
secret checks that never reveal values, and the one-line errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError

from fleet_rlm.engine import RunError, RunResult, run_rlm
from fleet_rlm.sandbox import modal as modal_backend
from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalTransport
from fleet_rlm.sandbox.modal import (
    ModalBackendError,
    ModalStream,
    ModalTransport,
    check_secret,
    check_secret_key,
    run_many,
    upload_to_volume,
    volume_text,
)
from fleet_rlm.testing import ScriptedLM
from tests.fake_modal import FakeModal, fake_modal_options

MiB = 1024 * 1024
SECRET = {
    "DSPY_LM_MODEL": "openai/gpt-4o-mini",
    "DSPY_LM_API_BASE": "https://proxy.example",
    "DSPY_LLM_API_KEY": "sk-live-abcdefghijklmnopqrstuvwxyz0123",
}


@pytest.fixture
def fake(monkeypatch):
    fake = FakeModal().install(monkeypatch)
    yield fake
    fake.close()


def transport(fake: FakeModal, **kw) -> ModalTransport:
    return ModalTransport(**{**fake.transport_kwargs(), **kw})


def driver_stdin_bytes(fake: FakeModal) -> int:
    return sum(p.stdin_bytes for sb in fake.sandboxes for p in sb.driver_execs)


# -- what the sandbox is created with -----------------------------------------------------------


def test_sandbox_gets_image_secrets_volume_timeouts_and_resources(fake):
    fake.add_secret("LITELLM", **SECRET)
    fake.add_volume("rlm-volume-dspy")
    t = transport(
        fake,
        app_name="rlm-tests",
        python_version="3.11",
        pip_packages=("numpy", "pandas"),
        secrets=("LITELLM",),
        volume="rlm-volume-dspy",
        timeout=900,
        idle_timeout=60,
        cpu=2.0,
        memory=2048,
    )
    with SandboxInterpreter(t) as interp:
        out = interp.execute("import os; print(len(os.environ['DSPY_LLM_API_KEY']))")
    assert out.strip() == str(len(SECRET["DSPY_LLM_API_KEY"]))
    [created] = fake.created()
    assert created["app"].name == "rlm-tests"
    assert created["image"].python_version == "3.11"
    assert created["image"].pip == ["numpy", "pandas"]
    assert [s.name for s in created["secrets"]] == ["LITELLM"]
    assert {m: v.name for m, v in created["volumes"].items()} == {t.volume_mount: "rlm-volume-dspy"}
    assert (created["timeout"], created["idle_timeout"]) == (900, 60)
    assert (created["cpu"], created["memory"]) == (2.0, 2048)
    assert created["block_network"] is True
    assert fake.sandboxes[0].terminated, "close() must terminate the sandbox"


def test_defaults_expose_no_secrets_and_no_network(fake):
    t = ModalTransport()
    t.sandbox()
    t.close()
    [created] = fake.created()
    assert created["secrets"] == [] and created["volumes"] == {}
    assert created["block_network"] is True
    assert created["image"].python_version == "3.12" and created["image"].pip == []
    assert created["timeout"] == 3600
    assert t.driver_config() == {"workdir": "/sandbox"}
    assert ("App.lookup", ("fleet-rlm",)) in [(c.what, c.args) for c in fake.calls]


def test_secret_values_stay_out_of_the_sandbox_by_default(fake):
    fake.add_secret("LITELLM", **SECRET)
    with SandboxInterpreter(transport(fake)) as interp:
        out = interp.execute("import os; print(sorted(k for k in os.environ if 'DSPY' in k))")
    assert out.strip() == "[]"


# -- restarts -----------------------------------------------------------------------------------


def test_restart_after_timeout_reuses_the_sandbox(fake):
    with SandboxInterpreter(transport(fake), timeout=1.5) as interp:
        interp.execute("x = 41")
        with pytest.raises(CodeExecutionError, match="TimeoutError"):
            interp.execute("while True: pass")
        assert interp.execute("print('alive')").strip() == "alive"
        with pytest.raises(CodeExecutionError, match="NameError"):
            interp.execute("print(x)")  # state was lost, and the model is told so
    assert len(fake.created()) == 1
    [sandbox] = fake.sandboxes
    assert len(sandbox.driver_execs) == 2
    first = sandbox.driver_execs[0]
    assert first.poll() is not None, "the timed-out driver must be killed"
    kills = [p for p in sandbox.execs if p not in sandbox.driver_execs]
    assert len(kills) == 1 and kills[0].args[-1].isdigit()  # killed by pid, from the hello
    assert sandbox.terminated  # shutdown ends the sandbox, no separate kill


def test_a_dead_sandbox_is_replaced(fake):
    with SandboxInterpreter(transport(fake)) as interp:
        interp.execute("x = 1")
        fake.sandboxes[0].terminate()  # e.g. its lifetime ran out
        with pytest.raises(CodeExecutionError, match="SandboxCrashed"):
            interp.execute("print(1)")
        assert interp.execute("print(2)").strip() == "2"
    assert len(fake.created()) == 2


def test_exit_reason_reports_exit_code(fake):
    with (
        SandboxInterpreter(transport(fake)) as interp,
        pytest.raises(
            CodeExecutionError, match="SandboxCrashed: the sandbox driver exited with code 7"
        ),
    ):
        interp.execute("import os; os._exit(7)")


def test_exit_reason_reports_stderr_when_the_driver_cannot_start(fake):
    blocker = fake.root / "blocker"
    blocker.write_text("a file where the workdir should go")
    interp = SandboxInterpreter(transport(fake, workdir=str(blocker / "work")))
    with pytest.raises(
        CodeInterpreterError, match=r"(?s)exited with code 1; stderr: .*NotADirectoryError"
    ):
        interp.start()
    interp.shutdown()


def test_driver_too_big_for_argv_is_written_once(fake, monkeypatch):
    monkeypatch.setattr(modal_backend, "_MAX_INLINE_DRIVER", 10)
    with SandboxInterpreter(transport(fake), timeout=1.5) as interp:
        with pytest.raises(CodeExecutionError):
            interp.execute("while True: pass")
        assert interp.execute("print(3)").strip() == "3"
    writes = [c for c in fake.calls if c.what == "filesystem.write_bytes"]
    assert len(writes) == 1 and writes[0].args[0].endswith("/driver.py")


# -- inputs staged as files ---------------------------------------------------------------------


def test_large_input_is_staged_in_the_sandbox_once(fake):
    context = "abc\u00e9" * (3 * MiB)  # non-ASCII: the file holds UTF-8, decoded by the driver
    t = transport(fake, stage_threshold=1 * MiB)
    with SandboxInterpreter(t, timeout=1.5) as interp:
        assert interp.execute("print(len(context))", {"context": context}).strip() == str(
            len(context)
        )
        with pytest.raises(CodeExecutionError):
            interp.execute("while True: pass", {"context": context})
        out = interp.execute("print(context[-4:], len(context))", {"context": context})
        assert out.strip() == f"abc\u00e9 {len(context)}"
        small = interp.execute("print(q)", {"q": "short", "context": context})
        assert small.strip() == "short"
        assert interp.bytes_sent < 64 * 1024
    writes = [c for c in fake.calls if c.what == "filesystem.write_bytes"]
    assert len(writes) == 1, "a restart must reuse the staged file, not upload it again"
    assert writes[0].args[1] == len(context.encode("utf-8"))
    assert driver_stdin_bytes(fake) < 64 * 1024


def test_json_inputs_are_staged_too(fake):
    records = [{"id": i, "text": "x" * 100} for i in range(30_000)]
    with SandboxInterpreter(transport(fake, stage_threshold=1 * MiB)) as interp:
        out = interp.execute("print(len(records), records[-1]['id'])", {"records": records})
    assert out.strip() == "30000 29999"
    assert driver_stdin_bytes(fake) < 64 * 1024


def test_context_goes_through_the_volume_and_is_uploaded_once(fake):
    fake.add_volume("rlm-volume-dspy")
    context = "needle-free haystack. " * 200_000  # ~4.4 MB
    steps = ["print(len(context))", "SUBMIT(answer=str(len(context)))"]
    opts = fake_modal_options(
        fake=fake, modal={"volume": "rlm-volume-dspy", "stage_threshold": 1 * MiB}
    )
    for _ in range(2):  # a second run (new sandbox) finds the file already in the volume
        result = run_rlm(
            "context -> answer: str", {"context": context}, lm=ScriptedLM(steps), sandbox=opts
        )
        assert result.outputs["answer"] == str(len(context))
        assert result.summary["bytes_to_sandbox"] < 64 * 1024
    assert driver_stdin_bytes(fake) < 128 * 1024
    uploads = [c for c in fake.calls if c.what == "Volume.batch_upload"]
    assert len(uploads) == 1
    [path] = uploads[0].kwargs["paths"]
    assert path.startswith("/.fleet-rlm/inputs/")
    stored = fake.volumes["rlm-volume-dspy"] / path.lstrip("/")
    assert stored.read_bytes() == context.encode()
    assert len(fake.created()) == 2


def test_parallel_runs_share_one_volume_upload(fake):
    fake.add_volume("vol")
    context = "0123456789" * 200_000
    opts = fake_modal_options(fake=fake, modal={"volume": "vol", "stage_threshold": 1 * MiB})
    tasks = [
        {
            "signature": "context -> answer: str",
            "inputs": {"context": context},
            "lm": ScriptedLM([f"SUBMIT(answer=str(len(context) + {i}))"]),
        }
        for i in range(4)
    ]
    results = run_many(tasks, max_concurrent=4, sandbox=opts)
    assert [r.outputs["answer"] for r in results] == [str(len(context) + i) for i in range(4)]
    assert len([c for c in fake.calls if c.what == "Volume.batch_upload"]) == 1
    assert len(fake.created()) == 4


def test_failed_staging_falls_back_to_the_stream(fake, monkeypatch):
    t = transport(fake, stage_threshold=1 * MiB)

    def broken(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(t.sandbox().filesystem, "write_bytes", broken)
    with SandboxInterpreter(t) as interp:
        out = interp.execute("print(len(big))", {"big": "y" * (2 * MiB)})
    assert out.strip() == str(2 * MiB)
    assert interp.bytes_sent > 2 * MiB


class _BadStaging(LocalTransport):
    def stage_value(self, name, value, encoding):
        return "/nonexistent/fleet-rlm/staged.str"


def test_driver_reports_an_unreadable_staged_file():
    with SandboxInterpreter(_BadStaging()) as interp:
        with pytest.raises(CodeExecutionError, match="'ctx' could not be loaded"):
            interp.execute("print(1)", {"ctx": "anything"})
        assert interp.execute("print(2)").strip() == "2"


# -- volume helpers -----------------------------------------------------------------------------


def test_upload_to_volume_skips_existing_files_unless_forced(fake, tmp_path):
    fake.add_volume("rlm-volume-dspy")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("alpha")
    (docs / "sub" / "b.txt").write_text("beta")
    single = tmp_path / "notes.md"
    single.write_text("notes")
    first = upload_to_volume("rlm-volume-dspy", [docs, single], remote_dir="/kb")
    assert sorted(first) == ["/kb/docs/a.txt", "/kb/docs/sub/b.txt", "/kb/notes.md"]
    assert upload_to_volume("rlm-volume-dspy", [docs, single], remote_dir="/kb") == []
    assert len(upload_to_volume("rlm-volume-dspy", [single], "/kb", force=True)) == 1
    single.write_text("notes, edited")
    with pytest.raises(ModalBackendError, match="force=True"):
        upload_to_volume("rlm-volume-dspy", [single], remote_dir="/kb")
    root = fake.volumes["rlm-volume-dspy"]
    assert (root / "kb/docs/sub/b.txt").read_text() == "beta"
    with pytest.raises(FileNotFoundError):
        upload_to_volume("rlm-volume-dspy", [tmp_path / "missing.txt"])


def test_a_volume_file_as_the_context(fake, tmp_path):
    fake.add_volume("rlm-volume-dspy")
    doc = tmp_path / "dspy-doc.txt"
    doc.write_bytes(("line of docs \u2014 " * 50_000).encode())
    upload_to_volume("rlm-volume-dspy", [doc], remote_dir="/docs")
    uploads_before = len([c for c in fake.calls if c.what == "Volume.batch_upload"])
    downloaded = volume_text("rlm-volume-dspy", "docs/dspy-doc.txt")
    local = volume_text("rlm-volume-dspy", "/docs/dspy-doc.txt", local_path=doc)
    assert downloaded == local == doc.read_text(encoding="utf-8")
    assert local.path == "/docs/dspy-doc.txt"
    opts = fake_modal_options(fake=fake, modal={"volume": "rlm-volume-dspy"})
    steps = ["SUBMIT(answer=str(len(context)) + context[:4])"]
    result = run_rlm(
        "context -> answer: str", {"context": local}, lm=ScriptedLM(steps), sandbox=opts
    )
    assert result.outputs["answer"] == f"{len(local)}line"
    assert result.summary["bytes_to_sandbox"] < 32 * 1024  # read from the volume, not sent
    assert len([c for c in fake.calls if c.what == "Volume.batch_upload"]) == uploads_before
    assert any(c.what == "Sandbox.reload_volumes" for c in fake.calls)
    doc.write_text("changed")
    with pytest.raises(ModalBackendError, match="does not match"):
        volume_text("rlm-volume-dspy", "/docs/dspy-doc.txt", local_path=doc)


# -- batch runs ---------------------------------------------------------------------------------


def test_run_many_bounds_concurrency_and_keeps_order(fake):
    live, peak = [0], [0]
    lock = threading.Lock()

    def slow(prompt: str) -> str:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.3)
        with lock:
            live[0] -= 1
        return prompt[::-1]

    tasks = [
        {
            "signature": "word -> answer: str",
            "inputs": {"word": w},
            "lm": ScriptedLM(["SUBMIT(answer=llm_query(word))"], respond=slow),
        }
        for w in ("alpha", "beta", "gamma", "delta", "epsilon")
    ]
    tasks.append({"signature": "word -> answer: str", "inputs": {"word": "x"}, "max_iterations": 0})
    seen = []
    results = run_many(
        tasks,
        max_concurrent=2,
        sandbox=fake_modal_options(fake=fake),
        on_result=lambda i, r: seen.append(i),
    )
    assert [r.outputs["answer"] for r in results[:5]] == [
        "ahpla",
        "ateb",
        "ammag",
        "atled",
        "nolispe",
    ]
    assert all(isinstance(r, RunResult) for r in results[:5])
    assert isinstance(results[5], ValueError)  # a bad task does not stop the batch
    assert peak[0] == 2
    assert sorted(seen) == list(range(6))
    assert len(fake.created()) == 5 and all(sb.terminated for sb in fake.sandboxes)
    with pytest.raises(ValueError, match="signature"):
        run_many([{"inputs": {}}], sandbox=fake_modal_options(fake=fake))


# -- secrets --------------------------------------------------------------------------------------


def test_check_secret_reports_lengths_never_values(fake, capsys):
    fake.add_secret("LITELLM", **SECRET)
    rows = check_secret("LITELLM")
    assert rows == [
        ("DSPY_LM_MODEL", True, len(SECRET["DSPY_LM_MODEL"])),
        ("DSPY_LM_API_BASE", True, len(SECRET["DSPY_LM_API_BASE"])),
        ("DSPY_LLM_API_KEY", True, len(SECRET["DSPY_LLM_API_KEY"])),
        ("DSPY_LM_MAX_TOKENS", False, 0),
    ]
    assert check_secret_key("LITELLM", "DSPY_LLM_API_KEY") == (
        True,
        len(SECRET["DSPY_LLM_API_KEY"]),
    )
    assert check_secret_key("LITELLM", "NOPE") == (False, 0)
    everything = repr(rows) + repr(
        [(c.args, c.kwargs) for c in fake.calls if c.what != "Sandbox.create"]
    )
    everything += "".join(capsys.readouterr())
    for value in SECRET.values():
        assert value not in everything
    created = fake.created()
    assert all(c["block_network"] for c in created)
    assert all(sb.terminated for sb in fake.sandboxes)


def test_check_secret_missing_secret(fake):
    with pytest.raises(ModalBackendError) as info:
        check_secret("LITELLM")
    message = str(info.value)
    assert "'LITELLM' not found" in message and "modal secret create LITELLM" in message
    assert not fake.created()


# -- errors ---------------------------------------------------------------------------------------


def test_missing_token(fake):
    fake.authenticated = False
    with pytest.raises(ModalBackendError) as info:
        ModalTransport().start()
    message = str(info.value)
    assert "not authenticated" in message and "modal setup" in message
    assert "modal token set" in message and len(message.splitlines()) <= 2
    with pytest.raises(ModalBackendError, match="modal setup"):
        check_secret()


def test_missing_token_through_a_run(fake):
    fake.authenticated = False
    with pytest.raises(RunError, match="modal setup"):
        run_rlm(
            "q -> a",
            {"q": "?"},
            lm=ScriptedLM(["SUBMIT(a='x')"]),
            sandbox=fake_modal_options(fake=fake),
        )


def test_missing_secret_and_volume_name_the_fix(fake):
    with pytest.raises(ModalBackendError, match=r"modal secret create LITELLM DSPY_LM_MODEL="):
        ModalTransport(secrets=("LITELLM",)).start()
    with pytest.raises(ModalBackendError, match="modal volume create rlm-volume-dspy"):
        ModalTransport(volume="rlm-volume-dspy").start()
    with pytest.raises(ModalBackendError, match="modal volume create nope"):
        upload_to_volume("nope", [])
    with pytest.raises(CodeInterpreterError, match="modal secret create"):
        SandboxInterpreter(ModalTransport(secrets=("LITELLM",))).start()
    assert not fake.created()


def test_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "modal", None)  # what `import modal` does when absent
    with pytest.raises(ModalBackendError, match=r"uv sync --extra modal"):
        ModalTransport().start()
    with pytest.raises(ModalBackendError, match=r"uv sync --extra modal"):
        check_secret()


def test_shadowing_modal_py(fake, tmp_path, monkeypatch):
    (tmp_path / "modal.py").write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModalBackendError, match="shadows the `modal` package"):
        ModalTransport().start()


def test_errors_are_redacted(fake, monkeypatch):
    from tests import fake_modal

    def leaky(*_a, **_k):
        raise fake_modal.Error("quota exceeded for key sk-abcdefghijklmnopqrstuvwx123")

    monkeypatch.setattr(fake.module.Sandbox, "create", classmethod(lambda cls, *a, **k: leaky()))
    with pytest.raises(ModalBackendError) as info:
        ModalTransport().start()
    assert "sk-abcdef" not in str(info.value) and "[REDACTED]" in str(info.value)


# -- the stream adapter ---------------------------------------------------------------------------


class _Proc:
    def __init__(self, chunks, fail=None):
        self.stdin = self
        self.written = b""
        self.eof = False
        self._chunks, self._fail = chunks, fail
        self.stdout = self._gen()

    def _gen(self):
        yield from self._chunks
        if self._fail:
            raise self._fail

    def write(self, data):
        self.written += data

    def drain(self):
        pass

    def write_eof(self):
        self.eof = True


def test_stream_reframes_chunks_into_bounded_lines():
    hellos = []
    proc = _Proc([b'{"type": "hello", "pid": 4', b"2}\nab", "c\nde", b"fghij\n", b"tail"])
    stream = ModalStream(proc, hellos.append)
    assert stream.readline(100) == b'{"type": "hello", "pid": 42}\n'
    assert hellos == [{"type": "hello", "pid": 42}]
    assert stream.readline(100) == b"abc\n"
    assert stream.readline(3) == b"def"  # at most `limit` bytes, like io readline
    assert stream.readline(100) == b"ghij\n"
    assert stream.readline(100) == b"tail"
    assert stream.readline(100) == b""
    stream.write(b"x\n")
    assert proc.written == b"x\n"
    stream.close()
    assert proc.eof
    with pytest.raises(ValueError):
        stream.write(b"late")


def test_stream_turns_sdk_failures_into_eof_and_oserror():
    stream = ModalStream(_Proc([b"partial"], fail=RuntimeError("sandbox gone")), lambda h: None)
    assert stream.readline(100) == b"partial"
    assert stream.readline(100) == b""
    assert "sandbox gone" in (stream.error or "")

    class Broken(_Proc):
        def drain(self):
            raise RuntimeError("stream closed")

    with pytest.raises(OSError, match="stream closed"):
        ModalStream(Broken([]), lambda h: None).write(b"x")


# -- the fake matches the real SDK ---------------------------------------------------------------

_SURFACE_CHECK = textwrap.dedent(
    """
    import inspect, json, sys
    try:
        import modal
    except ImportError:
        print(json.dumps(None)); sys.exit()
    import modal.container_process, modal.io_streams
    from modal.sandbox._filesystem import _SandboxFilesystem
    def params(fn):
        return sorted(inspect.signature(fn).parameters)
    print(json.dumps({
        "App.lookup": params(modal.App.lookup),
        "Image.debian_slim": params(modal.Image.debian_slim),
        "Image.pip_install": params(modal.Image.pip_install),
        "Secret.from_name": params(modal.Secret.from_name),
        "Volume.from_name": params(modal.Volume.from_name),
        "Volume.listdir": params(modal.Volume.listdir),
        "Volume.batch_upload": params(modal.Volume.batch_upload),
        "Volume.read_file": params(modal.Volume.read_file),
        "Sandbox.create": params(modal.Sandbox.create),
        "Sandbox.exec": params(modal.Sandbox.exec),
        "Sandbox.reload_volumes": params(modal.Sandbox.reload_volumes),
        "Sandbox.terminate": params(modal.Sandbox.terminate),
        "Sandbox.poll": params(modal.Sandbox.poll),
        "filesystem.write_bytes": params(_SandboxFilesystem.write_bytes),
        "hydrate": hasattr(modal.Secret, "hydrate") and hasattr(modal.Volume, "hydrate"),
        "process": [n for n in ("stdin", "stdout", "stderr", "poll", "wait")
                    if hasattr(modal.container_process.ContainerProcess, n)],
        "stdin": [n for n in ("write", "drain", "write_eof")
                  if hasattr(modal.io_streams.StreamWriter, n)],
        "stdout": [n for n in ("__iter__", "read") if hasattr(modal.io_streams.StreamReader, n)],
        "errors": [n for n in ("Error", "AuthError", "NotFoundError")
                   if hasattr(modal.exception, n)],
    }))
    """
)

# Every keyword ModalTransport and the helpers pass to the SDK.
_USED = {
    "App.lookup": {"name", "create_if_missing"},
    "Image.debian_slim": {"python_version"},
    "Image.pip_install": {"packages"},
    "Secret.from_name": {"name"},
    "Volume.from_name": {"name"},
    "Volume.listdir": {"path", "recursive"},
    "Volume.batch_upload": {"force"},
    "Volume.read_file": {"path"},
    "Sandbox.create": {
        "app",
        "image",
        "secrets",
        "volumes",
        "timeout",
        "idle_timeout",
        "cpu",
        "memory",
        "block_network",
        "env",
    },
    "Sandbox.exec": {"args", "text"},
    "Sandbox.reload_volumes": set(),
    "Sandbox.terminate": set(),
    "Sandbox.poll": set(),
    "filesystem.write_bytes": {"data", "remote_path"},
}


def test_the_sdk_calls_we_make_exist_in_the_real_modal():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    proc = subprocess.run(
        [sys.executable, "-c", _SURFACE_CHECK], capture_output=True, text=True, env=env, timeout=120
    )
    real = json.loads(proc.stdout.strip().splitlines()[-1])
    if real is None:
        pytest.skip("the real modal SDK is not installed")
    for name, used in _USED.items():
        assert used <= set(real[name]), f"{name}: {used - set(real[name])} not in the real SDK"
    assert real["hydrate"] is True
    assert real["process"] == ["stdin", "stdout", "stderr", "poll", "wait"]
    assert real["stdin"] == ["write", "drain", "write_eof"]
    assert real["stdout"] == ["__iter__", "read"]
    assert real["errors"] == ["Error", "AuthError", "NotFoundError"]


def test_real_sdk_without_a_token_gives_the_clear_message(tmp_path):
    code = textwrap.dedent(
        """
        import importlib.util, sys
        if importlib.util.find_spec("modal") is None:
            print("SKIP"); sys.exit()
        from fleet_rlm.sandbox.modal import ModalTransport, ModalBackendError
        try:
            ModalTransport(app_name="fleet-rlm-no-token-test").start()
        except ModalBackendError as exc:
            print("ERROR:", exc)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(MODAL_CONFIG_PATH=str(tmp_path / "no-modal.toml"), HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    if proc.stdout.startswith("SKIP"):
        pytest.skip("the real modal SDK is not installed")
    assert "ERROR: Modal is not authenticated" in proc.stdout, proc.stdout + proc.stderr
    assert "modal setup" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_fake_volume_mount_is_a_real_folder(fake):
    # sanity of the fake itself: the mount path reaches the volume's folder
    fake.add_volume("v")
    t = transport(fake, volume="v")
    t.sandbox()
    (fake.volumes["v"] / "hello.txt").write_text("hi")
    assert (Path(t.volume_mount) / "hello.txt").read_text() == "hi"
    t.close()
