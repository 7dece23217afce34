"""Network: sandboxed code reaches no socket of the host, not even on loopback."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalTransport, SandboxLimits
from tests.security import linux_root

pytestmark = linux_root

CONNECT = r"""
import socket
def tcp(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        got = s.recv(16)
        s.close()
        return "connected " + got.decode()
    except OSError as exc:
        return type(exc).__name__
def unix(path):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(path)
        got = s.recv(16)
        s.close()
        return "connected " + got.decode()
    except OSError as exc:
        return type(exc).__name__
print({"tcp": tcp(%(port)d), "abstract": unix("\0" + %(abstract)r), "run": unix(%(run)r)})
"""


@pytest.fixture
def listeners():
    """A TCP listener on 127.0.0.1, an abstract unix socket and one in /run, each answering 'hi'."""
    tcp = socket.create_server(("127.0.0.1", 0))
    abstract_name = f"fleet-rlm-sec-{os.getpid()}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    run_path = Path("/run") / f"fleet-rlm-sec-{os.getpid()}.sock"
    run_sock = socket.socket(socket.AF_UNIX)
    run_sock.bind(str(run_path))
    run_path.chmod(0o777)  # like /run/postgresql/.s.PGSQL.5432 or the D-Bus system socket
    run_sock.listen()
    servers = [tcp, abstract, run_sock]
    stop = threading.Event()

    def serve(server):
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hi")

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield {"port": tcp.getsockname()[1], "abstract": abstract_name, "run": str(run_path)}
    stop.set()
    for t in threads:
        t.join()
    for s in servers:
        s.close()
    run_path.unlink(missing_ok=True)


def probe(transport, listeners) -> dict:
    with SandboxInterpreter(transport, timeout=30) as interp:
        return eval(interp.execute(CONNECT % listeners))


def test_loopback_and_local_sockets_are_unreachable(listeners):
    transport = LocalTransport()
    result = probe(transport, listeners)
    assert not any(v.startswith("connected") for v in result.values()), result


def test_control_the_same_probe_connects_without_isolation(listeners):
    """Control: without isolation every listener answers (the probe itself works)."""
    result = probe(LocalTransport(isolate=False), listeners)
    assert result == {"tcp": "connected hi", "abstract": "connected hi", "run": "connected hi"}


def test_allowing_network_keeps_the_rest_of_the_isolation(listeners):
    """SandboxLimits(network=True) drops only the network namespace: /tmp, /run and the cwd
    stay masked and the uid is still a throw-away one."""
    transport = LocalTransport(SandboxLimits(network=True))
    with SandboxInterpreter(transport, timeout=30) as interp:
        result = eval(interp.execute(CONNECT % listeners))
        seen = interp.execute("import os; print(os.listdir('/run'), os.getuid())")
        assert interp.isolation["network"] == "host network (allowed)"
        assert interp.isolation.get("pid_namespace") is True
    assert result["tcp"] == "connected hi"
    assert result["run"] != "connected hi"
    run_list, uid = seen.rsplit(" ", 1)
    assert run_list == "[]" and int(uid) != 0
