"""The embedded local backend: the driver in a subprocess on this machine.

Isolation, strongest the OS allows without extra software: a fresh temporary working
directory, an environment with nothing but what Python needs, resource limits, and on Linux
new network/PID/mount namespaces (no network at all; host processes invisible; /tmp, secrets
files and config folders masked) plus, when the host runs as root, a throw-away user id so
process limits apply and other users' files stay closed. What cannot be applied is reported
by the driver and logged as a warning, never silently skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from fleet_rlm.sandbox.transport import DRIVER_PATH, SandboxStartError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandbox process (and everything it starts)."""

    memory_mb: int = 4096
    cpu_seconds: int = 3600
    file_size_mb: int = 1024
    processes: int = 256
    open_files: int = 512
    network: bool = False

    def __post_init__(self) -> None:
        for name in ("memory_mb", "cpu_seconds", "file_size_mb", "processes", "open_files"):
            if getattr(self, name) <= 0:
                value = getattr(self, name)
                raise ValueError(f"sandbox limit {name} must be positive, got {value}")

    def rlimits(self) -> dict[str, int]:
        return {
            "as": self.memory_mb * 1024 * 1024,
            "cpu": self.cpu_seconds,
            "fsize": self.file_size_mb * 1024 * 1024,
            "nofile": self.open_files,
            "core": 0,
        }


class PipeStream:
    """Stream over a subprocess's stdin/stdout pipes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._stdin, self._stdout = proc.stdin, proc.stdout

    def write(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def readline(self, limit: int) -> bytes:
        return self._stdout.readline(limit)

    def close(self) -> None:
        for stream in (self._stdin, self._stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


_SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt", "/var", "/srv"}


def _mask_paths(extra: tuple[str, ...]) -> list[str]:
    """Folders and files to hide from sandboxed code (tmpfs over folders, /dev/null over files).

    Home folders and the working directory are hidden whole; the driver binds back, read-only,
    only what its Python needs (the install, the venv, sys.path).
    """
    home, cwd = Path.home(), Path.cwd()
    # /run: local services' unix sockets (a database, D-Bus) are a way out of the network
    # namespace; the sandbox has no use for them.
    candidates = [Path(p) for p in ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root")] + [home]
    if str(cwd) not in _SYSTEM_DIRS:
        candidates.append(cwd)
    if Path("/home").is_dir():
        candidates.append(Path("/home"))
    candidates += [Path(p) for p in extra]
    # The .env the host loads may sit in a parent of the cwd (find_dotenv): hide its folder
    # (the project) and, should that folder be a system one, the file itself.
    with contextlib.suppress(Exception):
        from fleet_rlm.config import find_env_file

        env_file = find_env_file()
        if env_file is not None:
            env_file = Path(os.path.abspath(env_file))
            candidates += [env_file.parent, env_file]
    out: list[str] = []
    for path in candidates:
        if path.exists() and str(path) not in _SYSTEM_DIRS and str(path) not in out:
            out.append(str(path))
    return out


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
    return pids


class LocalTransport:
    """Runs the driver as `python -I driver.py` in a fresh temp dir, isolated as configured."""

    name = "local"

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        isolate: bool = True,
        python: str | None = None,
        mask: tuple[str, ...] = (),
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.isolate = isolate
        self.python = python or sys.executable
        self.mask = mask
        self.workdir: str | None = None
        self.uid: int | None = None
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._live: dict[str, int] = {}  # the running process group, for the exit-time reaper
        self._reaper: weakref.finalize | None = None

    def driver_config(self) -> dict:
        cfg: dict = {"workdir": self.workdir, "rlimits": self.limits.rlimits()}
        if self.isolate:  # network=True drops only the network namespace, never the masking
            cfg["namespaces"] = sys.platform.startswith("linux")
            cfg["mask_paths"] = _mask_paths(self.mask)
            cfg["network"] = self.limits.network
        if self.uid is not None:
            cfg["uid"] = self.uid
            cfg["rlimits"]["nproc"] = self.limits.processes
        return cfg

    def start(self) -> PipeStream:
        self.kill()
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="fleet-rlm-sandbox-")
            if self.isolate and hasattr(os, "geteuid") and os.geteuid() == 0:
                # A throw-away uid: process limits apply (they never do for root) and the
                # sandbox cannot read other users' private files.
                self.uid = random.randint(200_000, 2**31 - 10)
                os.chown(self.workdir, self.uid, self.uid)
                os.chmod(self.workdir, 0o700)
            # A caller that never calls close() (a script that just ends) still leaves no
            # sandbox process and no temporary folder behind: this runs at exit or on collection.
            self._reaper = weakref.finalize(self, _reap, self._live, self.workdir)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.workdir,
            "TMPDIR": self.workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        try:
            self._proc = subprocess.Popen(
                [self.python, "-I", "-B", "-X", "utf8", str(DRIVER_PATH)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                bufsize=1 << 16,
            )
            self._live["pgid"] = self._proc.pid
        except OSError as exc:
            raise SandboxStartError(
                f"could not start the local sandbox ({self.python}): {exc}"
            ) from exc
        return PipeStream(self._proc)

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        self._live.pop("pgid", None)
        if proc is None:
            return
        if self.uid is not None:
            # The sandbox's own processes first (also any that left the process group), so the
            # relay parent reaps the namespaced driver and exits: no zombie is left to init.
            pids = _processes_of(self.uid)
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2 if pids else 0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        if self.uid is not None:
            for pid in _processes_of(self.uid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        self._last_returncode = proc.returncode

    def exit_reason(self) -> str:
        proc = self._proc
        if proc is not None:  # the channel closes just before the process ends: give it a moment
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        code = proc.poll() if proc is not None else getattr(self, "_last_returncode", None)
        if code is None:
            reason = "the sandbox process is still running"
        elif code < 0:
            sig = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = {
                "SIGKILL": " (killed: memory limit, or stopped by the host)",
                "SIGXCPU": " (CPU-time limit)",
                "SIGSEGV": " (crashed)",
            }.get(sig, "")
            reason = f"the sandbox process was ended by {sig}{hint}"
        else:
            reason = f"the sandbox process exited with code {code}"
        tail = self._stderr_tail()
        return f"{reason}; stderr: {tail}" if tail else reason

    def _stderr_tail(self, limit: int = 600) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode("utf-8", "replace").strip()
        return ""

    def close(self) -> None:
        self.kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._reaper is not None:
            self._reaper()  # removes the working folder, once
            self._reaper = None
        elif self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None


def _reap(live: dict[str, int], workdir: str) -> None:
    """Kill a still-running sandbox process group, then remove its working folder."""
    pgid = live.pop("pgid", None)
    if pgid is not None:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)


def check_platform() -> str | None:
    """None if the local sandbox can run here, else why not."""
    if os.name != "posix":
        return "the local sandbox needs a POSIX system (Linux or macOS); use --sandbox modal"
    if not Path(DRIVER_PATH).is_file():
        return f"the sandbox driver is missing at {DRIVER_PATH}"
    return None
