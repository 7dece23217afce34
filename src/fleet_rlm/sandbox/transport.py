"""What a sandbox backend provides: a way to start the driver and talk to it as a byte stream.

The protocol is written once (`interpreter.SandboxInterpreter`); a backend only knows how to
start a process running `driver.py` and hand back its stdin/stdout, like an httpx transport.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

DRIVER_PATH = Path(__file__).with_name("driver.py")


def driver_source() -> str:
    """The driver's source, for backends that ship it into a remote sandbox."""
    return DRIVER_PATH.read_text(encoding="utf-8")


class SandboxStartError(RuntimeError):
    """The sandbox could not be started; the message says why and what to do."""


@runtime_checkable
class Stream(Protocol):
    """A duplex byte stream to one driver process."""

    def write(self, data: bytes) -> None:
        """Write all of `data` (blocking) to the driver's stdin."""

    def readline(self, limit: int) -> bytes:
        """Read one line (with its newline) of at most `limit` bytes; b"" at end of stream."""

    def close(self) -> None:
        """Close both directions; further reads return b""."""


@runtime_checkable
class Transport(Protocol):
    """Starts and stops one driver process; a new process on every `start()`."""

    name: str

    def start(self) -> Stream:
        """Start a fresh driver process and return its stream."""

    def driver_config(self) -> dict:
        """Isolation settings this backend asks the driver to apply to itself."""

    def kill(self) -> None:
        """Kill the current process and everything it started; idempotent."""

    def exit_reason(self) -> str:
        """One human line on how the last process ended (signal, exit code, log tail)."""

    def close(self) -> None:
        """Kill the process and release every resource (temp dirs, cloud sandboxes)."""
