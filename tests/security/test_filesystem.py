"""Filesystem: sandboxed code writes only in its own working directory; host files never change."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import dspy
import pytest

from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalTransport
from fleet_rlm.sandbox.transport import DRIVER_PATH
from tests.security import linux_root, visible_host_dir

pytestmark = linux_root

ATTEMPTS = r"""
import os, shutil
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "ok"
    except BaseException as exc:
        results[name] = type(exc).__name__

def write(path, mode="w"):
    def fn():
        with open(path, mode) as f:
            f.write("pwned")
    return fn

T = %(targets)r
attempt("etc_new", write("/etc/fleet-rlm-pwned"))
attempt("etc_passwd", write("/etc/passwd", "a"))
attempt("cwd_new", write(T["cwd"] + "/pwned.txt"))
attempt("cwd_sentinel", write(T["cwd"] + "/sentinel.txt", "a"))
attempt("home_new", write(T["home"] + "/fleet-rlm-pwned"))
attempt("tmp_new", write("/tmp/fleet-rlm-pwned"))
attempt("run_new", write("/run/fleet-rlm-pwned"))
attempt("visible_new", write(T["visible"] + "/pwned.txt"))
attempt("visible_file", write(T["visible"] + "/data.txt", "a"))
attempt("visible_chmod", lambda: os.chmod(T["visible"] + "/data.txt", 0o666))
attempt("visible_unlink", lambda: os.unlink(T["visible"] + "/data.txt"))
attempt("visible_rename", lambda: os.rename(T["visible"] + "/data.txt", "stolen.txt"))
attempt("driver", write(T["driver"], "a"))
attempt("site_packages", write(T["dspy"], "a"))
attempt("site_packages_new", write(os.path.dirname(T["dspy"]) + "/pwned.py"))
def via_hardlink():
    os.link(T["visible"] + "/data.txt", "linked.txt")
    write("linked.txt", "a")()
attempt("hardlink", via_hardlink)
def via_symlink():
    os.symlink(T["visible"] + "/data.txt", "sym.txt")
    write("sym.txt", "a")()
attempt("symlink", via_symlink)
attempt("mkdir_etc", lambda: os.mkdir("/etc/fleet-rlm-pwned.d"))
def unmount_mask():
    import ctypes
    if ctypes.CDLL(None, use_errno=True).umount2(b"/tmp", 2) != 0:
        raise OSError(ctypes.get_errno(), "umount2 failed")
attempt("unmount_mask", unmount_mask)
attempt("workdir", write("mine.txt"))
print(results)
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host_tree(monkeypatch):
    """A cwd (masked) and a visible folder, each with a world-readable sentinel file."""
    cwd, visible = visible_host_dir(), visible_host_dir()
    for folder, name in ((cwd, "sentinel.txt"), (visible, "data.txt")):
        (folder / name).write_text("original\n")
        (folder / name).chmod(0o644)
    monkeypatch.chdir(cwd)
    yield cwd, visible
    shutil.rmtree(cwd, ignore_errors=True)
    shutil.rmtree(visible, ignore_errors=True)


def test_writes_outside_the_workdir_fail_and_host_files_stay_unchanged(host_tree):
    cwd, visible = host_tree
    home = Path.home()
    dspy_init = Path(dspy.__file__)
    watched = [
        cwd / "sentinel.txt",
        visible / "data.txt",
        Path("/etc/passwd"),
        DRIVER_PATH,
        dspy_init,
    ]
    before = {p: digest(p) for p in watched}
    listing = {d: sorted(os.listdir(d)) for d in (cwd, visible, home, dspy_init.parent)}
    targets = {
        "cwd": str(cwd),
        "home": str(home),
        "visible": str(visible),
        "driver": str(DRIVER_PATH),
        "dspy": str(dspy_init),
    }

    transport = LocalTransport()
    with SandboxInterpreter(transport, timeout=30) as interp:
        results = eval(interp.execute(ATTEMPTS % {"targets": targets}))
        workdir = Path(transport.workdir)
        assert (workdir / "mine.txt").read_text() == "pwned"  # the workdir is writable

    assert results.pop("workdir") == "ok"
    assert {k: v for k, v in results.items() if v == "ok"} == {}, results
    assert {p: digest(p) for p in watched} == before
    assert {d: sorted(os.listdir(d)) for d in listing} == listing
    for path in (
        "/etc/fleet-rlm-pwned",
        "/etc/fleet-rlm-pwned.d",
        "/tmp/fleet-rlm-pwned",
        "/run/fleet-rlm-pwned",
        home / "fleet-rlm-pwned",
    ):
        assert not os.path.exists(path), path
    assert not workdir.exists(), "the sandbox's working directory outlived it"


def test_masked_folders_look_empty_and_python_still_works(host_tree):
    """/tmp, home, /run and the cwd are empty inside; Python's own paths are re-bound read-only."""
    cwd, _ = host_tree
    marker = Path("/tmp") / f"fleet-rlm-sec-marker-{os.getpid()}"
    marker.write_text("host tmp file")
    try:
        with SandboxInterpreter(LocalTransport(), timeout=30) as interp:
            out = interp.execute(
                "import os, json, sys\n"
                f"print((sorted(os.listdir('/tmp')), os.listdir({str(cwd)!r}),"
                f" os.path.exists({str(marker)!r}), os.listdir('/run')))"
            )
            assert interp.isolation.get("pid_namespace") is True
    finally:
        marker.unlink()
    tmp_list, cwd_list, marker_seen, run_list = eval(out)
    # only its workdir, and the roots of Python's own paths when they live under /tmp (they are
    # bound back read-only, e.g. a project cloned under /tmp with its .venv)
    python_paths = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *sys.path) if p}
    python_roots = {
        p.relative_to("/tmp").parts[0] for p in python_paths if Path("/tmp") in p.parents
    }
    assert all(n.startswith("fleet-rlm-sandbox-") or n in python_roots for n in tmp_list), tmp_list
    assert cwd_list == [] and marker_seen is False and run_list == []
