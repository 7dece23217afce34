"""Security suite: one module per guarantee (see docs/security.md).

Tests that take the `make_interpreter` / `options` fixtures run on every backend in
`tests.conftest.BACKENDS`; tests that build a `LocalTransport` themselves check what only the
local backend's isolation (namespaces, a throw-away uid, rlimits) provides.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

linux_root = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="local isolation under test needs Linux as root (namespaces, throw-away uid)",
)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children_of(pid: int) -> set[int]:
    """Live direct children of `pid`, from /proc."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[1]) == pid:
                out.add(int(entry))
    return out


def processes_of(uids: set[int]) -> list[tuple[int, str]]:
    """(pid, state) of every process (zombies too) owned by one of `uids`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if uid in uids:
                fields = _stat_fields(int(entry))
                out.append((int(entry), fields[0] if fields else "?"))
    return out


def wait_until(check, timeout: float = 5.0, interval: float = 0.1):
    """Poll `check()` until it returns a falsy value; return the last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    return value


def status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in kB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux: write 5 to clear_refs); False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def visible_host_dir() -> Path:
    """A fresh world-readable folder outside every masked location (/tmp, home, /run, cwd).

    Files here are what a sandbox could see if masking failed; the caller removes it.
    """
    for parent in ("/srv", "/opt", "/var/lib", "/mnt"):
        if os.path.isdir(parent) and os.access(parent, os.W_OK):
            path = Path(tempfile.mkdtemp(prefix="fleet-rlm-sec-", dir=parent))
            path.chmod(0o755)
            return path
    pytest.skip("no writable folder outside the masked locations")
