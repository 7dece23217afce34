"""The Modal backend: the same driver, in a Modal cloud sandbox (gVisor), reused across restarts.

Why a sandbox plus `exec`, not a Modal Function: the driver is a long-lived REPL that talks
JSON lines over stdin/stdout, which is exactly what `Sandbox.exec` gives. The sandbox is created
once per transport and kept; a driver restart (after a timeout or crash) kills the exec'd
process group and execs a fresh driver in the same sandbox, so the image, the volume mount and
any staged inputs survive and a restart costs one round trip, not a cold start.

Isolation is Modal's: each sandbox is a gVisor container of its own, by default with no
network (the LM stays on the host: `llm_query` is answered over the protocol) and no secrets.
Large inputs can skip the protocol stream: they are written once as a file into the sandbox,
or into a Modal volume (content-addressed, so parallel sandboxes share one upload), and the
driver loads them from that path.

`modal` is an optional dependency, imported only when a sandbox is needed; every failure a
user can fix (extra not installed, no token, missing secret or volume) is a one- or two-line
`ModalBackendError` that says what to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

from fleet_rlm.redact import Redactor
from fleet_rlm.sandbox.transport import SandboxStartError, driver_source

if TYPE_CHECKING:
    from fleet_rlm.engine import RunResult, SandboxOptions
    from fleet_rlm.sandbox.local import SandboxLimits

log = logging.getLogger(__name__)

DEFAULT_APP = "fleet-rlm"
VOLUME_MOUNT = "/data"
SECRET_KEYS = ("DSPY_LM_MODEL", "DSPY_LM_API_BASE", "DSPY_LLM_API_KEY", "DSPY_LM_MAX_TOKENS")
STAGE_THRESHOLD = 8 * 1024 * 1024
STAGED_DIR = ".fleet-rlm/inputs"  # inside the volume, or under `stage_dir` in the sandbox
_MAX_INLINE_DRIVER = 100_000  # Linux caps one argv string at 128 KiB

# Runs the driver from argv: its own process group (so a restart can kill everything it
# started), a working directory that exists, and the driver's real file name in tracebacks
# (the driver drops its own frames by that name).
_BOOTSTRAP = """\
import os, sys
try:
    os.setsid()
except OSError:
    pass
os.makedirs(sys.argv[1], exist_ok=True)
os.chdir(sys.argv[1])
path = sys.argv[2]
if len(sys.argv) > 3:
    source = sys.argv[3]
else:
    with open(path, encoding="utf-8") as f:
        source = f.read()
sys.argv = [path]
exec(compile(source, path, "exec"), {"__name__": "__main__", "__file__": path})
"""

_KILL = """\
import os, signal, sys
for pid in map(int, sys.argv[1:]):
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""

# Prints only lengths: a secret's value never leaves the sandbox.
_SECRET_LENGTHS = """\
import json, os, sys
print(json.dumps({k: len(os.environ[k]) if k in os.environ else None for k in sys.argv[1:]}))
"""


class ModalBackendError(SandboxStartError):
    """A Modal problem the user can fix; the message (one or two lines) says how."""


# ---------------------------------------------------------------------------------------------
# The SDK and its errors
# ---------------------------------------------------------------------------------------------


def _sdk() -> ModuleType:
    """The `modal` package, checked for a shadowing modal.py first."""
    from fleet_rlm.config import ConfigError, check_modal_shadowing

    try:
        check_modal_shadowing()
    except ConfigError as exc:
        raise ModalBackendError(str(exc)) from None
    try:
        import modal
    except ImportError:
        raise ModalBackendError(
            "the Modal backend needs the `modal` package: run `uv sync --extra modal` "
            "(or `pip install 'fleet-rlm[modal]'`)"
        ) from None
    return modal


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _explain(sdk: ModuleType, exc: BaseException, doing: str) -> ModalBackendError:
    """Turn a Modal SDK exception into a short, redacted, actionable error."""
    errors = sdk.exception
    if isinstance(exc, errors.AuthError):
        message = (
            f"Modal is not authenticated ({doing}): {_first_line(exc)}\n"
            "Run `uv run modal setup` (or `uv run modal token set --token-id ID "
            "--token-secret SECRET`)."
        )
    elif isinstance(exc, errors.NotFoundError):
        message = f"Modal could not find what {doing} needs: {_first_line(exc)}"
    else:
        message = f"Modal error while {doing}: {type(exc).__name__}: {_first_line(exc)}"
    return ModalBackendError(Redactor()(message))


@contextlib.contextmanager
def _modal_errors(sdk: ModuleType, doing: str) -> Iterator[None]:
    try:
        yield
    except ModalBackendError:
        raise
    except sdk.exception.Error as exc:
        raise _explain(sdk, exc, doing) from None


_APPS: dict[tuple[ModuleType, str], Any] = {}  # keyed by module: fakes never collide
_APPS_LOCK = threading.Lock()


def _app(sdk: ModuleType, name: str) -> Any:
    """`App.lookup(name, create_if_missing=True)`, once per process and app name."""
    key = (sdk, name)
    with _APPS_LOCK:
        if key not in _APPS:
            with _modal_errors(sdk, f"looking up the Modal app {name!r}"):
                _APPS[key] = sdk.App.lookup(name, create_if_missing=True)
        return _APPS[key]


def _secret(sdk: ModuleType, name: str) -> Any:
    """A hydrated secret, so a missing one is reported by name before any sandbox starts."""
    secret = sdk.Secret.from_name(name)
    try:
        secret.hydrate()
    except sdk.exception.NotFoundError:
        raise ModalBackendError(
            f"Modal secret {name!r} not found. Create it with:\n"
            f"  uv run modal secret create {name} " + " ".join(f"{k}=..." for k in SECRET_KEYS)
        ) from None
    except sdk.exception.Error as exc:
        raise _explain(sdk, exc, f"reading the Modal secret {name!r}") from None
    return secret


def _volume(sdk: ModuleType, name: str) -> Any:
    volume = sdk.Volume.from_name(name)
    try:
        volume.hydrate()
    except sdk.exception.NotFoundError:
        raise ModalBackendError(
            f"Modal volume {name!r} not found. Create it with: uv run modal volume create {name}"
        ) from None
    except sdk.exception.Error as exc:
        raise _explain(sdk, exc, f"opening the Modal volume {name!r}") from None
    return volume


def _default_image(sdk: ModuleType, python_version: str, pip_packages: Sequence[str]) -> Any:
    image = sdk.Image.debian_slim(python_version=python_version)
    return image.pip_install(*pip_packages) if pip_packages else image


# ---------------------------------------------------------------------------------------------
# Stream over an exec'd process
# ---------------------------------------------------------------------------------------------


class ModalStream:
    """`Stream` over a `ContainerProcess`: stdin is a StreamWriter, stdout a bytes StreamReader.

    Modal delivers stdout in chunks of any size; `readline(limit)` re-frames them into lines
    (at most `limit` bytes, like `io.BufferedReader.readline`). The first line, the driver's
    `hello`, carries its pid, which the transport needs to kill it later.
    """

    def __init__(self, proc: Any, on_hello: Callable[[dict], None]) -> None:
        self._stdin = proc.stdin
        self._chunks = iter(proc.stdout)
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._eof = False
        self._closed = False
        self._on_hello: Callable[[dict], None] | None = on_hello
        self.error: str | None = None

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed Modal stream")
        try:
            self._stdin.write(data)
            self._stdin.drain()
        except Exception as exc:  # any SDK failure means the pipe is gone
            raise OSError(f"Modal stdin: {type(exc).__name__}: {_first_line(exc)}") from None

    def readline(self, limit: int) -> bytes:
        while True:
            end = self._buf.find(b"\n", self._scanned, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self._buf) >= limit:
                return self._take(limit)
            self._scanned = len(self._buf)
            if self._eof or self._closed:
                return self._take(len(self._buf))
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                continue
            except Exception as exc:  # the stream broke: report it, end like EOF
                self.error = f"{type(exc).__name__}: {_first_line(exc)}"
                self._eof = True
                continue
            self._buf += chunk.encode("utf-8") if isinstance(chunk, str) else chunk

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf

    def _take(self, n: int) -> bytes:
        line = bytes(self._buf[:n])
        del self._buf[:n]
        self._scanned = 0
        if self._on_hello is not None and line:
            hook, self._on_hello = self._on_hello, None
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                hook(json.loads(line))
        return line

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._stdin.write_eof()
            self._stdin.drain()


def _wait(proc: Any, timeout: float) -> int | None:
    """`proc.wait()` bounded in time (the SDK's wait has no timeout)."""
    box: list[int | None] = [None]

    def run() -> None:
        with contextlib.suppress(Exception):
            box[0] = proc.wait()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return box[0]


class _Tail:
    """Keeps the last bytes of a stream (the driver's stderr) for error messages."""

    def __init__(self, reader: Any, limit: int = 4096) -> None:
        self.data = b""
        self.limit = limit
        self._thread = threading.Thread(target=self._run, args=(reader,), daemon=True)
        self._thread.start()

    def _run(self, reader: Any) -> None:
        with contextlib.suppress(Exception):
            for chunk in reader:
                if isinstance(chunk, str):
                    chunk = chunk.encode("utf-8", "replace")
                self.data = (self.data + chunk)[-self.limit :]

    def text(self, limit: int = 600, *, settle: float = 0.0) -> str:
        self._thread.join(settle)  # after the process ended, its stderr ends too
        return self.data.decode("utf-8", "replace").strip()[-limit:]


# ---------------------------------------------------------------------------------------------
# Inputs stored in a volume
# ---------------------------------------------------------------------------------------------


class VolumeText(str):
    """Text whose exact bytes (UTF-8) sit in a Modal volume at `path`.

    Pass it as an input like any str (dspy sees the real text, lengths and previews are right);
    a `ModalTransport` that mounts the same volume has the driver read the file in the sandbox
    instead of sending the text. Build it with `volume_text()`.
    """

    volume: str
    path: str

    def __new__(cls, text: str, volume: str, path: str) -> VolumeText:
        obj = super().__new__(cls, text)
        obj.volume = volume
        obj.path = "/" + str(path).lstrip("/")
        return obj


def _volume_files(sdk: ModuleType, vol: Any, remote_dir: str) -> dict[str, int]:
    """{volume path without leading slash: size} under `remote_dir` (empty if it is missing)."""
    try:
        entries = vol.listdir(remote_dir, recursive=True)
    except (FileNotFoundError, sdk.exception.NotFoundError):
        return {}
    return {str(e.path).lstrip("/"): int(e.size) for e in entries}


def upload_to_volume(
    volume_name: str,
    local_paths: Iterable[str | Path],
    remote_dir: str = "/",
    force: bool = False,
) -> list[str]:
    """Upload files (folders recursively) to a volume; returns the volume paths uploaded.

    A file already there with the same size is skipped (so re-running is cheap); one there with
    a different size is an error unless `force`, which overwrites. Volume paths are
    `remote_dir/<name>` for files and `remote_dir/<folder>/<relative path>` for folders.
    """
    sdk = _sdk()
    vol = _volume(sdk, volume_name)
    base = PurePosixPath("/") / remote_dir.lstrip("/")
    plan: list[tuple[Path, str]] = []
    for item in map(Path, local_paths):
        if item.is_dir():
            plan += [
                (f, str(base / item.name / f.relative_to(item).as_posix()))
                for f in sorted(item.rglob("*"))
                if f.is_file()
            ]
        elif item.is_file():
            plan.append((item, str(base / item.name)))
        else:
            raise FileNotFoundError(f"nothing to upload at {item}")
    with _modal_errors(sdk, f"uploading to the Modal volume {volume_name!r}"):
        existing = _volume_files(sdk, vol, str(base))
        todo = []
        for local, remote in plan:
            size = existing.get(remote.lstrip("/"))
            if size is None or force:
                todo.append((local, remote))
            elif size != local.stat().st_size:
                raise ModalBackendError(
                    f"{remote} is already in volume {volume_name!r} with different contents; "
                    "pass force=True to overwrite it"
                )
        if todo:
            with vol.batch_upload(force=force) as batch:
                for local, remote in todo:
                    batch.put_file(str(local), remote)
    return [remote for _, remote in todo]


def volume_text(volume_name: str, path: str, *, local_path: str | Path | None = None) -> VolumeText:
    """A volume file as a context input: the sandbox reads it from the volume, not the stream.

    The host still needs the text (dspy shows the model its length and a preview): it is read
    from `local_path` when you have the uploaded copy (checked against the volume's size), else
    downloaded once from the volume.
    """
    sdk = _sdk()
    vol = _volume(sdk, volume_name)
    remote = "/" + path.lstrip("/")
    with _modal_errors(sdk, f"reading {remote} from the Modal volume {volume_name!r}"):
        if local_path is not None:
            data = Path(local_path).read_bytes()
            size = _volume_files(sdk, vol, remote).get(remote.lstrip("/"))
            if size != len(data):
                raise ModalBackendError(
                    f"{remote} in volume {volume_name!r} does not match {local_path} "
                    f"({size} vs {len(data)} bytes); upload it with upload_to_volume(force=True)"
                )
        else:
            try:
                data = b"".join(vol.read_file(remote))
            except FileNotFoundError:
                raise ModalBackendError(f"{remote} is not in volume {volume_name!r}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModalBackendError(f"{remote} is not UTF-8 text ({exc.reason})") from None
    return VolumeText(text, volume_name, remote)


# Content-addressed inputs known to be in a volume: (sdk, volume, file) -> when we learned it.
_IN_VOLUME: dict[tuple[ModuleType, str, str], float] = {}
_UPLOAD_LOCKS: dict[tuple[ModuleType, str, str], threading.Lock] = {}
_UPLOAD_LOCKS_GUARD = threading.Lock()


# ---------------------------------------------------------------------------------------------
# The transport
# ---------------------------------------------------------------------------------------------


class ModalTransport:
    """Runs the driver in a Modal sandbox (created lazily, reused across driver restarts).

    Args:
        app_name: Modal app the sandboxes belong to (looked up, created if missing).
        image: a `modal.Image`; default `Image.debian_slim(python_version)` plus `pip_packages`
            (the driver needs only the standard library; add what model code should import).
        secrets: names of Modal secrets to expose to the sandbox. None by default, on purpose:
            the LM runs on the host and `llm_query` is answered over the protocol, so the
            sandbox needs no key; a secret in the sandbox is an environment variable that
            model-written code can read and print into the trajectory or the next prompt.
            Add one only for sandbox-side code that truly needs it.
        volume: name of a Modal volume to mount at `volume_mount` (e.g. "rlm-volume-dspy").
            With a volume, large inputs are staged there once, content-addressed, and shared by
            every sandbox (batch runs upload a shared context once).
        timeout: lifetime of the sandbox in seconds (Modal's own default is 5 minutes).
        idle_timeout: end the sandbox after this many idle seconds (None: only `timeout`).
        cpu, memory: Modal resource requests (cores, MiB); None for Modal's defaults.
        network: allow outbound network from the sandbox (off: nothing there needs it).
        workdir: the driver's working directory in the sandbox (created if missing).
        limits: optional rlimits the driver sets on itself (CPU seconds, memory, files).
        stage_threshold: inputs of at least this many bytes are staged as a file instead of
            streamed through stdin; None to always stream.
        stage_dir: where staged inputs go in the sandbox when there is no volume.
        python: the interpreter to run in the image.
    """

    name = "modal"

    def __init__(
        self,
        app_name: str = DEFAULT_APP,
        *,
        image: Any = None,
        python_version: str = "3.12",
        pip_packages: Sequence[str] = (),
        secrets: Sequence[str] = (),
        volume: str | None = None,
        volume_mount: str = VOLUME_MOUNT,
        timeout: int = 3600,
        idle_timeout: int | None = None,
        cpu: float | None = None,
        memory: int | None = None,
        network: bool = False,
        env: Mapping[str, str] | None = None,
        workdir: str = "/sandbox",
        limits: SandboxLimits | None = None,
        stage_threshold: int | None = STAGE_THRESHOLD,
        stage_dir: str = "/tmp/fleet-rlm",
        python: str = "python",
    ) -> None:
        if isinstance(secrets, str):
            secrets = (secrets,)
        for label, path in (("workdir", workdir), ("volume_mount", volume_mount)):
            if not path.startswith("/"):
                raise ValueError(f"{label} must be an absolute path in the sandbox, got {path!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.app_name = app_name
        self.image = image
        self.python_version = python_version
        self.pip_packages = tuple(pip_packages)
        self.secrets = tuple(secrets)
        self.volume = volume
        self.volume_mount = volume_mount.rstrip("/") or "/"
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.cpu = cpu
        self.memory = memory
        self.network = network
        self.env = dict(env or {})
        self.workdir = workdir
        self.limits = limits
        self.stage_threshold = stage_threshold
        self.stage_dir = stage_dir.rstrip("/")
        self.python = python
        self.bytes_staged = 0  # bytes this transport uploaded as files (not via stdin)
        self._lock = threading.RLock()
        self._sdk_module: ModuleType | None = None
        self._sandbox: Any = None
        self._volume_obj: Any = None
        self._created_at = 0.0
        self._proc: Any = None
        self._stream: ModalStream | None = None
        self._pid: int | None = None
        self._tail: _Tail | None = None
        self._staged: dict[str, str] = {}
        self._driver_file: str | None = None
        self._last: tuple[Any, ModalStream | None] = (None, None)
        self._doomed: list[int] = []  # pids of killed drivers, ended remotely on the next start

    # -- sandbox lifecycle ------------------------------------------------------------------------

    @property
    def _modal(self) -> ModuleType:
        if self._sdk_module is None:
            self._sdk_module = _sdk()
        return self._sdk_module

    def sandbox(self) -> Any:
        """The `modal.Sandbox` (created on first use): for extra `exec`s or file transfers."""
        with self._lock:
            if self._sandbox is None:
                started = time.monotonic()  # uploads finished before this are in its mounts
                self._sandbox = self._create()
                self._created_at = started
                self._staged.clear()
                self._driver_file = None
            return self._sandbox

    def _create(self) -> Any:
        sdk = self._modal
        app = _app(sdk, self.app_name)
        secrets = [_secret(sdk, name) for name in self.secrets]
        volumes = {}
        if self.volume:
            self._volume_obj = _volume(sdk, self.volume)
            volumes[self.volume_mount] = self._volume_obj
        kwargs: dict[str, Any] = {
            "app": app,
            "image": self.image or _default_image(sdk, self.python_version, self.pip_packages),
            "secrets": secrets,
            "volumes": volumes,
            "timeout": self.timeout,
            "idle_timeout": self.idle_timeout,
            "block_network": not self.network,
        }
        if self.cpu is not None:
            kwargs["cpu"] = self.cpu
        if self.memory is not None:
            kwargs["memory"] = self.memory
        if self.env:
            kwargs["env"] = self.env
        with _modal_errors(sdk, "creating the Modal sandbox"):
            return sdk.Sandbox.create(**kwargs)

    def _drop_sandbox(self) -> None:
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
            self._doomed.clear()  # terminating the sandbox ends every process in it
        if sandbox is not None:
            with contextlib.suppress(Exception):
                sandbox.terminate()

    # -- Transport --------------------------------------------------------------------------------

    def driver_config(self) -> dict:
        # No namespaces or uid switch: the gVisor sandbox is the boundary.
        cfg: dict = {"workdir": self.workdir}
        if self.limits is not None:
            cfg["rlimits"] = self.limits.rlimits()
        return cfg

    def start(self) -> ModalStream:
        self.kill()
        sdk = self._modal
        try:
            self._reap(self.sandbox())
            proc = self._exec_driver(self.sandbox())
        except ModalBackendError:
            raise
        except sdk.exception.Error as exc:
            # The sandbox ended (lifetime, idle timeout, terminated): start a fresh one, once.
            log.info("Modal sandbox unusable (%s); creating a new one", _first_line(exc))
            self._drop_sandbox()
            with _modal_errors(sdk, "starting the sandbox driver"):
                proc = self._exec_driver(self.sandbox())
        self._proc, self._pid = proc, None
        self._tail = _Tail(proc.stderr)
        self._stream = ModalStream(proc, self._on_hello)
        return self._stream

    def _exec_driver(self, sandbox: Any) -> Any:
        source = driver_source()
        path = f"{self.stage_dir}/driver.py"
        args = [self.python, "-I", "-B", "-u", "-X", "utf8", "-c", _BOOTSTRAP, self.workdir, path]
        if len(source.encode("utf-8")) <= _MAX_INLINE_DRIVER:
            args.append(source)  # no upload round trip: the driver travels in argv
        elif self._driver_file != path:
            sandbox.filesystem.write_bytes(source.encode("utf-8"), path)
            self._driver_file = path
        return sandbox.exec(*args, text=False)

    def _on_hello(self, hello: dict) -> None:
        if hello.get("type") == "hello" and isinstance(hello.get("pid"), int):
            self._pid = hello["pid"]

    def kill(self) -> None:
        """Cut the driver off now; its process group is killed on the next `start()`.

        Deferred because a kill is one more remote exec: a restart does it right before the
        new driver starts, and `close()` ends the whole sandbox instead.
        """
        proc, self._proc = self._proc, None
        stream, self._stream = self._stream, None
        if proc is None:
            return
        self._last = (proc, stream)
        if stream is not None:
            stream.close()  # EOF on stdin: an idle driver exits by itself
        pid, self._pid = self._pid, None
        if pid is not None:
            self._doomed.append(pid)
        else:  # it never said hello: nothing smaller than the sandbox is known to end
            self._drop_sandbox()

    def _reap(self, sandbox: Any) -> None:
        pids, self._doomed = self._doomed, []
        if not pids:
            return
        try:
            sandbox.exec(self.python, "-I", "-c", _KILL, *map(str, pids)).wait()
        except Exception as exc:  # the sandbox is gone or broken: the next one is fresh
            log.info("could not kill the old driver (%s); replacing the sandbox", _first_line(exc))
            self._drop_sandbox()

    def exit_reason(self) -> str:
        proc, stream = (self._proc, self._stream) if self._proc is not None else self._last
        return self._describe_exit(proc, stream)

    def _describe_exit(self, proc: Any, stream: ModalStream | None) -> str:
        code = None
        if proc is not None:
            with contextlib.suppress(Exception):
                code = proc.poll()
            if code is None and stream is not None and stream.at_eof:
                code = _wait(proc, 2.0)  # stdout ended: the exit status follows shortly
        if proc is None:
            reason = "the sandbox driver was not started"
        elif code is None:
            reason = "the sandbox driver is still running"
        elif code < 0 or code > 128:
            reason = f"the sandbox driver was killed (signal {abs(code) % 128}: memory, or stopped)"
        else:
            reason = f"the sandbox driver exited with code {code}"
        sandbox = self._sandbox
        if sandbox is not None:
            ended = None
            with contextlib.suppress(Exception):
                ended = sandbox.poll()
            if ended is not None:
                reason += f"; the Modal sandbox itself ended (its lifetime is {self.timeout} s)"
        if stream is not None and stream.error:
            reason += f"; stream error: {stream.error}"
        tail = self._tail.text(settle=1.0 if code is not None else 0.0) if self._tail else ""
        if tail:
            reason += f"; stderr: {tail}"
        return Redactor()(reason)

    def close(self) -> None:
        self.kill()
        self._drop_sandbox()
        self._staged.clear()

    # -- staged inputs (optional transport hook used by SandboxInterpreter._put) ------------------

    def stage_value(self, name: str, value: str | bytes, encoding: str) -> str | None:
        """Put a large input where the driver can read it; its path in the sandbox, or None.

        `value` is the str itself (encoding "str") or its JSON bytes ("json"). Staged files
        survive driver restarts (and, in a volume, the sandbox), so a value is uploaded once.
        """
        if isinstance(value, VolumeText) and self.volume and value.volume == self.volume:
            path = self.volume_mount.rstrip("/") + value.path
            if path not in self._staged:
                self.sandbox().reload_volumes()  # it may have been uploaded after we started
                self._staged[path] = path
            return path
        if self.stage_threshold is None:
            return None
        if isinstance(value, str):
            if len(value) * 4 < self.stage_threshold:
                return None
            data = value.encode("utf-8", "surrogatepass")
        else:
            data = bytes(value)
        if len(data) < self.stage_threshold:
            return None
        digest = hashlib.sha256(data).hexdigest()[:40]
        filename = f"{digest}.{encoding}"
        if filename in self._staged:
            return self._staged[filename]
        try:
            if self.volume:
                path = self._stage_on_volume(filename, data)
            else:
                path = f"{self.stage_dir}/{STAGED_DIR}/{filename}"
                self.sandbox().filesystem.write_bytes(data, path)
                self.bytes_staged += len(data)
        except ModalBackendError:
            raise
        except Exception as exc:
            log.warning(
                "could not stage input %r as a file (%s); sending it through the stream",
                name,
                Redactor()(_first_line(exc)),
            )
            return None
        self._staged[filename] = path
        return path

    def _stage_on_volume(self, filename: str, data: bytes) -> str:
        sandbox = self.sandbox()
        vol = self._volume_obj
        remote = f"/{STAGED_DIR}/{filename}"
        key = (self._modal, str(self.volume), filename)
        with _UPLOAD_LOCKS_GUARD:
            lock = _UPLOAD_LOCKS.setdefault(key, threading.Lock())
        with lock:  # parallel sandboxes of this process upload a shared input once
            known = _IN_VOLUME.get(key)
            if known is None:
                if _volume_files(self._modal, vol, remote).get(remote.lstrip("/")) != len(data):
                    # content-addressed: overwriting (a partial upload) is always safe
                    with vol.batch_upload(force=True) as batch:
                        batch.put_file(io.BytesIO(data), remote)
                    self.bytes_staged += len(data)
                known = _IN_VOLUME[key] = time.monotonic()
        if known >= self._created_at:
            sandbox.reload_volumes()  # mounted volumes show what was committed at creation
        return f"{self.volume_mount.rstrip('/')}{remote}"


# ---------------------------------------------------------------------------------------------
# Batch runs: one sandbox per task, bounded concurrency
# ---------------------------------------------------------------------------------------------


def run_many(
    tasks: Iterable[Mapping[str, Any]],
    *,
    max_concurrent: int = 4,
    sandbox: SandboxOptions | None = None,
    on_result: Callable[[int, RunResult | Exception], None] | None = None,
    **common: Any,
) -> list[RunResult | Exception]:
    """Run RLM tasks in parallel, each in its own sandbox; results in task order.

    Each task is a mapping with `signature` and `inputs` plus any `run_rlm` keyword that
    overrides `common` (e.g. its own `lm`). A failed task yields its exception (a `RunError`
    keeps the trajectory) instead of stopping the batch. Threads are enough: the work is
    waiting on LMs and sandboxes. With a `volume` in the Modal options, a context shared by
    many tasks is uploaded once.
    """
    import dspy

    from fleet_rlm.engine import SandboxOptions, run_rlm

    if max_concurrent <= 0:
        raise ValueError(f"max_concurrent must be positive, got {max_concurrent}")
    options = sandbox or SandboxOptions(backend="modal")
    common.setdefault("lm", dspy.settings.lm)  # worker threads do not see dspy.context()
    jobs = [dict(task) for task in tasks]
    for i, job in enumerate(jobs):
        if "signature" not in job or "inputs" not in job:
            raise ValueError(f"task {i} needs 'signature' and 'inputs'")

    def one(i: int) -> RunResult | Exception:
        job = {**common, "sandbox": options, **jobs[i]}
        try:
            result: RunResult | Exception = run_rlm(job.pop("signature"), job.pop("inputs"), **job)
        except Exception as exc:
            result = exc
        if on_result is not None:
            with contextlib.suppress(Exception):
                on_result(i, result)
        return result

    with ThreadPoolExecutor(max_concurrent, thread_name_prefix="fleet-rlm-batch") as pool:
        return list(pool.map(one, range(len(jobs))))


# ---------------------------------------------------------------------------------------------
# Secrets: presence and length only
# ---------------------------------------------------------------------------------------------


def check_secret(
    name: str = "LITELLM",
    keys: Sequence[str] = SECRET_KEYS,
    *,
    app_name: str = DEFAULT_APP,
    python_version: str = "3.12",
    timeout: int = 300,
) -> list[tuple[str, bool, int]]:
    """Which `keys` the Modal secret `name` holds: `[(key, present, length)]`, never values.

    Runs a tiny sandbox with the secret attached (no network) that prints only lengths.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    sdk = _sdk()
    app = _app(sdk, app_name)
    secret = _secret(sdk, name)
    with _modal_errors(sdk, f"checking the Modal secret {name!r}"):
        sandbox = sdk.Sandbox.create(
            app=app,
            image=_default_image(sdk, python_version, ()),
            secrets=[secret],
            timeout=timeout,
            block_network=True,
        )
        try:
            proc = sandbox.exec("python", "-I", "-c", _SECRET_LENGTHS, *keys)
            output = proc.stdout.read()
            code = proc.wait()
        finally:
            with contextlib.suppress(Exception):
                sandbox.terminate()
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    try:
        lengths = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ModalBackendError(
            f"the secret check in the Modal sandbox failed (exit code {code})"
        ) from None
    return [(k, lengths.get(k) is not None, int(lengths.get(k) or 0)) for k in keys]


def check_secret_key(name: str, key: str, **kwargs: Any) -> tuple[bool, int]:
    """One key of a Modal secret: (present, length); the value never leaves the sandbox."""
    [(_, present, length)] = check_secret(name, (key,), **kwargs)
    return present, length
