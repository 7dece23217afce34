"""A fake of the part of the `modal` SDK that fleet-rlm uses, for tests without Modal's cloud.

`FakeModal` is one fake workspace: which secrets and volumes exist, whether a token is
configured, and a record of every call (sandbox creations with their image, secrets, volumes
and timeouts; every exec). Its `module` stands in for `modal` in `sys.modules`.

`Sandbox.exec` really runs the command here, in a subprocess ("python" is this interpreter),
so ModalTransport drives the REAL driver over real pipes; only the cloud is fake. Paths are
not translated: a "sandbox" sees this machine's filesystem, so tests point `workdir`,
`stage_dir` and `volume_mount` into the fake's temporary root (see `transport_kwargs`). A
volume is a folder under that root, and mounting it links the mount path to that folder.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fleet_rlm.engine import SandboxOptions

# -- modal.exception: one set of classes, shared by every fake instance ------------------------


class Error(Exception):
    pass


class AuthError(Error):
    pass


class NotFoundError(Error):
    pass


class InvalidError(Error):
    pass


class ModalTimeoutError(Error):
    pass


class SandboxTerminatedError(Error):
    pass


class SandboxTimeoutError(ModalTimeoutError):
    pass


class SandboxFilesystemError(Error):
    pass


def _exception_module() -> types.ModuleType:
    mod = types.ModuleType("modal.exception")
    for cls in (
        Error,
        AuthError,
        NotFoundError,
        InvalidError,
        SandboxTerminatedError,
        SandboxTimeoutError,
        SandboxFilesystemError,
    ):
        setattr(mod, cls.__name__, cls)
    mod.TimeoutError = ModalTimeoutError
    return mod


TOKEN_MISSING = (
    "Token missing. Could not authenticate client. If you have token credentials, see "
    "modal.com/docs/sdk/py/latest/config for setup help."
)

# -- records ------------------------------------------------------------------------------------


@dataclass
class Call:
    what: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass
class FileEntry:
    path: str
    type: int
    mtime: int
    size: int


# -- the fake SDK objects -----------------------------------------------------------------------


class _Bound:
    """Base for fake SDK classes; `_fake` is set on a per-workspace subclass."""

    _fake: FakeModal


class FakeApp(_Bound):
    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def lookup(cls, name: str, *, client=None, environment_name=None, create_if_missing=False):
        fake = cls._fake
        fake.calls.append(Call("App.lookup", (name,), {"create_if_missing": create_if_missing}))
        fake.require_token()
        if name not in fake.apps and not create_if_missing:
            raise NotFoundError(f"App '{name}' not found")
        fake.apps.add(name)
        return cls(name)


class FakeImage(_Bound):
    def __init__(self, python_version: str | None = None, pip: tuple[str, ...] = ()) -> None:
        self.python_version = python_version
        self.pip = list(pip)

    @classmethod
    def debian_slim(cls, python_version: str | None = None, force_build: bool = False):
        return cls(python_version)

    def pip_install(self, *packages: str | list[str], **_: Any) -> FakeImage:
        flat = [p for item in packages for p in ([item] if isinstance(item, str) else item)]
        return type(self)(self.python_version, (*self.pip, *flat))


class FakeSecret(_Bound):
    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_name(cls, name: str, *, environment_name=None, required_keys=(), client=None):
        return cls(name)

    def hydrate(self, client=None) -> FakeSecret:
        self._fake.require_token()
        if self.name not in self._fake.secrets:
            raise NotFoundError(f"Secret '{self.name}' not found in environment 'main'")
        return self

    def values(self) -> dict[str, str]:
        self.hydrate()
        return dict(self._fake.secrets[self.name])


class _Batch:
    def __init__(self, volume: FakeVolume, force: bool) -> None:
        self.volume, self.force = volume, force
        self.files: list[tuple[bytes, str]] = []

    def put_file(self, local_file, remote_path, mode=None) -> None:
        if str(remote_path).endswith("/"):
            raise ValueError(f"remote_path ({remote_path}) must refer to a file")
        if isinstance(local_file, (str, os.PathLike)):
            data = Path(local_file).read_bytes()
        else:
            data = local_file.read()
        self.files.append((data, str(remote_path)))

    def put_directory(self, local_path, remote_path, recursive: bool = True) -> None:
        base = Path(local_path)
        for f in base.rglob("*") if recursive else base.glob("*"):
            if f.is_file():
                self.put_file(f, PurePosixPath(remote_path) / f.relative_to(base).as_posix())

    def __enter__(self) -> _Batch:
        return self

    def __exit__(self, exc_type, *_: Any) -> None:
        if exc_type is not None:
            return
        for _data, remote in self.files:
            if self.volume._local(remote).exists() and not self.force:
                raise FileExistsError(f"{remote}: already exists")
        for data, remote in self.files:
            target = self.volume._local(remote)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.volume._fake.calls.append(
            Call("Volume.batch_upload", (self.volume.name,), {"paths": [r for _, r in self.files]})
        )


class FakeVolume(_Bound):
    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_name(cls, name: str, *, environment_name=None, create_if_missing=False, **_: Any):
        if create_if_missing:
            cls._fake.add_volume(name)
        return cls(name)

    @property
    def root(self) -> Path:
        return self._fake.volumes[self.name]

    def _local(self, remote: str) -> Path:
        return self.root / str(remote).lstrip("/")

    def hydrate(self, client=None) -> FakeVolume:
        self._fake.require_token()
        if self.name not in self._fake.volumes:
            raise NotFoundError(f"Volume '{self.name}' not found in environment 'main'")
        return self

    def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        self.hydrate()
        target = self._local(path)
        if not target.exists():
            raise NotFoundError(f"No such file or directory: {path}")
        if target.is_file():
            items = [target]
        else:
            items = sorted(target.rglob("*") if recursive else target.glob("*"))
        return [
            FileEntry(
                path=p.relative_to(self.root).as_posix(),
                type=1 if p.is_file() else 2,
                mtime=int(p.stat().st_mtime),
                size=p.stat().st_size if p.is_file() else 0,
            )
            for p in items
        ]

    def batch_upload(self, force: bool = False) -> _Batch:
        self.hydrate()
        return _Batch(self, force)

    def read_file(self, path: str):
        self.hydrate()
        target = self._local(path)
        if not target.is_file():
            raise FileNotFoundError(f"No such file: {path}")
        data = target.read_bytes()
        for i in range(0, len(data), 1 << 20):
            yield data[i : i + (1 << 20)]


class FakeStreamReader:
    """Chunks of a pipe as they arrive: bytes (`text=False`) or str."""

    def __init__(self, pipe, text: bool) -> None:
        self._pipe = pipe
        self._text = text
        self.used = False

    def __iter__(self):
        self.used = True
        try:
            while True:
                chunk = self._pipe.read1(1 << 16)
                if not chunk:
                    return
                yield chunk.decode("utf-8", "replace") if self._text else chunk
        except (OSError, ValueError):
            return
        finally:
            self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()

    def read(self):
        data = b"".join(bytes(c) if not self._text else c.encode() for c in self)
        return data.decode("utf-8", "replace") if self._text else data


class FakeStreamWriter:
    def __init__(self, pipe, record: FakeProcess) -> None:
        self._pipe = pipe
        self._buf: list[bytes] = []
        self._eof = False
        self._record = record

    def write(self, data) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._buf.append(bytes(data))

    def write_eof(self) -> None:
        self._eof = True

    def drain(self) -> None:
        data, self._buf = b"".join(self._buf), []
        if data:
            self._pipe.write(data)
            self._pipe.flush()
            self._record.stdin_bytes += len(data)
        if self._eof:
            self._pipe.close()


class FakeProcess:
    def __init__(self, sandbox: FakeSandbox, args: tuple[str, ...], env: dict, text: bool):
        argv = [sys.executable if args[0] == "python" else args[0], *args[1:]]
        self.args = args
        self.stdin_bytes = 0
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=sandbox.fake.root,
        )
        self.stdin = FakeStreamWriter(self.popen.stdin, self)
        self.stdout = FakeStreamReader(self.popen.stdout, text)
        self.stderr = FakeStreamReader(self.popen.stderr, text)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self) -> int:
        code = self.popen.wait()
        for reader in (self.stdout, self.stderr):
            if not reader.used:  # nobody will read it: release the pipe
                reader.close()
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class FakeFilesystem:
    def __init__(self, sandbox: FakeSandbox) -> None:
        self.sandbox = sandbox

    def _path(self, remote: str) -> Path:
        if not remote.startswith("/"):
            raise InvalidError(f"{remote} must be absolute")
        path = Path(remote)
        if not path.resolve().is_relative_to(self.sandbox.fake.root.resolve()):
            raise SandboxFilesystemError(f"fake sandbox: {remote} is outside the fake's root")
        return path

    def write_bytes(self, data, remote_path: str) -> None:
        self.sandbox.check_running()
        path = self._path(remote_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(data))
        self.sandbox.fake.calls.append(Call("filesystem.write_bytes", (remote_path, len(data))))

    def write_text(self, data: str, remote_path: str) -> None:
        self.write_bytes(data.encode("utf-8"), remote_path)

    def read_bytes(self, remote_path: str) -> bytes:
        self.sandbox.check_running()
        return self._path(remote_path).read_bytes()


class FakeSandbox(_Bound):
    def __init__(self, args: tuple[str, ...], kwargs: dict) -> None:
        self.fake = self._fake
        self.args = args
        self.kwargs = kwargs
        self.execs: list[FakeProcess] = []
        self.terminated = False
        self.reloads = 0
        self.filesystem = FakeFilesystem(self)
        self.env: dict[str, str] = {}
        for secret in kwargs.get("secrets") or []:
            self.env.update(secret.values())
        self.env.update({k: v for k, v in (kwargs.get("env") or {}).items() if v is not None})
        for mount, volume in (kwargs.get("volumes") or {}).items():
            link = Path(mount)
            if link.is_relative_to(self.fake.root) and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # parallel sandboxes, same mount
                    link.symlink_to(volume.hydrate().root, target_is_directory=True)
        timeout = kwargs.get("timeout")
        self._timer = threading.Timer(timeout, self.terminate) if timeout else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    @classmethod
    def create(cls, *args: str, app=None, **kwargs: Any) -> FakeSandbox:
        fake = cls._fake
        fake.require_token()
        if app is None:
            raise InvalidError("App is required when creating a Sandbox from outside a container")
        for secret in kwargs.get("secrets") or []:
            secret.hydrate()
        for volume in (kwargs.get("volumes") or {}).values():
            volume.hydrate()
        sandbox = cls(args, {"app": app, **kwargs})
        fake.sandboxes.append(sandbox)
        fake.calls.append(Call("Sandbox.create", args, {"app": app, **kwargs}))
        return sandbox

    def check_running(self) -> None:
        if self.terminated:
            raise SandboxTerminatedError("Sandbox has already finished")

    def exec(self, *args: str, timeout=None, workdir=None, env=None, secrets=None, text=True, **kw):
        self.check_running()
        full_env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.fake.root),
            "LANG": "C.UTF-8",
            **self.env,
            **{k: v for k, v in (env or {}).items() if v is not None},
        }
        for secret in secrets or []:
            full_env.update(secret.values())
        self.fake.calls.append(
            Call("Sandbox.exec", args, {"timeout": timeout, "text": text, "workdir": workdir})
        )
        proc = FakeProcess(self, args, full_env, text)
        self.execs.append(proc)
        return proc

    def reload_volumes(self, *, timeout: int = 55) -> None:
        self.check_running()
        self.reloads += 1
        self.fake.calls.append(Call("Sandbox.reload_volumes"))

    def poll(self) -> int | None:
        return 0 if self.terminated else None

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def terminate(self, *, wait: bool = False) -> int | None:
        if not self.terminated:
            self.terminated = True
            if self._timer is not None:
                self._timer.cancel()
            for proc in self.execs:
                proc.kill()
                with contextlib.suppress(OSError, ValueError):
                    proc.popen.stdin.close()
            self.fake.calls.append(Call("Sandbox.terminate"))
        return 0 if wait else None

    @property
    def driver_execs(self) -> list[FakeProcess]:
        """The exec'd driver processes (not kill helpers or file writes)."""
        return [p for p in self.execs if "-c" in p.args and "exec(compile(" in " ".join(p.args)]


# -- the workspace --------------------------------------------------------------------------------


class FakeModal:
    """One fake Modal workspace; `module` is what `import modal` returns once installed."""

    _counter = itertools.count()

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or tempfile.mkdtemp(prefix="fake-modal-")).resolve()
        self.authenticated = True
        self.secrets: dict[str, dict[str, str]] = {}
        self.volumes: dict[str, Path] = {}
        self.apps: set[str] = set()
        self.sandboxes: list[FakeSandbox] = []
        self.calls: list[Call] = []
        self.module = self._build_module()

    def _build_module(self) -> types.ModuleType:
        mod = types.ModuleType("modal")
        mod.__version__ = "1.6.4+fake"
        mod.__fake__ = self
        mod.exception = _exception_module()
        for name, base in (
            ("App", FakeApp),
            ("Image", FakeImage),
            ("Secret", FakeSecret),
            ("Volume", FakeVolume),
            ("Sandbox", FakeSandbox),
        ):
            setattr(mod, name, type(name, (base,), {"_fake": self}))
        return mod

    # setup
    def add_secret(self, name: str, **values: str) -> None:
        self.secrets[name] = dict(values)

    def add_volume(self, name: str) -> Path:
        if name not in self.volumes:
            folder = self.root / "volumes" / name
            folder.mkdir(parents=True, exist_ok=True)
            self.volumes[name] = folder
        return self.volumes[name]

    def require_token(self) -> None:
        if not self.authenticated:
            raise AuthError(TOKEN_MISSING)

    def transport_kwargs(self) -> dict[str, Any]:
        """ModalTransport paths inside this fake's root (a fake sandbox shares our disk)."""
        n = next(self._counter)
        return {
            "workdir": str(self.root / f"work-{n}"),
            "stage_dir": str(self.root / f"stage-{n}"),
            "volume_mount": str(self.root / "mnt" / "data"),
        }

    # inspection
    def created(self) -> list[dict]:
        return [c.kwargs for c in self.calls if c.what == "Sandbox.create"]

    def execs(self) -> list[Call]:
        return [c for c in self.calls if c.what == "Sandbox.exec"]

    # installation
    def install(self, monkeypatch=None) -> FakeModal:
        """Make `import modal` return this fake (undone by `monkeypatch` when given)."""
        for name, mod in (("modal", self.module), ("modal.exception", self.module.exception)):
            if monkeypatch is not None:
                monkeypatch.setitem(sys.modules, name, mod)
            else:
                sys.modules[name] = mod
        return self

    def close(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.terminate()
        shutil.rmtree(self.root, ignore_errors=True)


_SHARED: FakeModal | None = None


def shared_fake() -> FakeModal:
    """The process-wide fake used by `fake_modal_options` (cleaned up at exit)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = FakeModal()
        atexit.register(_SHARED.close)
    return _SHARED


def fake_modal_options(
    *, fake: FakeModal | None = None, modal: dict | None = None, **kw
) -> SandboxOptions:
    """SandboxOptions for the modal backend against a fake Modal (installed in sys.modules).

    Without `fake`, the shared fake is installed for the rest of the session: conftest's
    `make_options` has no monkeypatch to undo it, and nothing in the suite needs the real SDK
    in-process (the real-SDK checks run in subprocesses).
    """
    fake = (fake or shared_fake()).install()
    return SandboxOptions(backend="modal", modal={**fake.transport_kwargs(), **(modal or {})}, **kw)
