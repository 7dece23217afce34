"""Resources: hostile code is stopped, bounded or contained, and the next `execute` works.

After every case: where the sandbox had to be restarted, the error says the model's state was
lost; where it was not, the model's variables are still there.
"""

from __future__ import annotations

import os
import time

import pytest
from dspy.primitives.code_interpreter import CodeExecutionError

from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalTransport, SandboxLimits
from tests.security import (
    children_of,
    linux_root,
    processes_of,
    reset_peak_rss,
    status_kb,
    wait_until,
)

STATE_LOST = "every variable you defined is gone"
GB = 1024**3


def run_case(interp: SandboxInterpreter, code: str) -> tuple[object, bool]:
    """Run hostile `code` after defining state; check the sandbox recovers. Returns
    (the result or the CodeExecutionError, whether the sandbox was restarted)."""
    interp.execute("kept = 41")
    restarts = interp.restarts
    try:
        outcome: object = interp.execute(code)
    except CodeExecutionError as exc:
        outcome = exc
    restarted = interp.restarts > restarts
    if restarted:
        assert isinstance(outcome, CodeExecutionError) and STATE_LOST in str(outcome), outcome
        assert interp.execute("print('kept' in globals())") == "False\n"
    else:
        assert interp.execute("print(kept + 1)") == "42\n"
    assert interp.execute("print('alive')") == "alive\n"
    return outcome, restarted


def local(**limits) -> SandboxInterpreter:
    return SandboxInterpreter(LocalTransport(SandboxLimits(**limits)), timeout=10)


# -- time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "while True: pass",
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True: pass",
        "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())\n"
        "while True: pass",
        "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except BaseException:\n"
        "        pass",
        "try:\n    SUBMIT('x')\nexcept BaseException:\n    while True: pass",
    ],
    ids=["busy", "ignore-sigterm", "block-all-signals", "swallow-everything", "after-submit"],
)
def test_endless_code_is_stopped_within_the_timeout(make_interpreter, code):
    interp = make_interpreter(timeout=1.5)
    t0 = time.monotonic()
    outcome, restarted = run_case(interp, code)
    # run_case's own three short executes are included in the bound
    assert time.monotonic() - t0 < 1.5 + 2 + 1
    assert restarted and "TimeoutError" in str(outcome)


@pytest.mark.parametrize(
    "code",
    [
        "while True:\n    ping()",
        "while True:\n    try:\n        fail()\n    except Exception:\n        pass",
    ],
    ids=["tool-loop", "failing-tool-loop"],
)
def test_a_loop_of_quick_tool_calls_cannot_dodge_the_timeout(make_interpreter, code):
    """Time waiting on host tools is not charged, but the sandbox's own time between calls is:
    an endless loop of tool calls (say llm_query after the LM budget ran out) still stops."""

    def fail():
        raise RuntimeError("LLM call limit exceeded")

    interp = make_interpreter(tools={"ping": lambda: 1, "fail": fail}, timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(CodeExecutionError, match="TimeoutError"):
        interp.execute(code)
    assert time.monotonic() - t0 < 1.5 + 2
    assert interp.execute("print(ping())") == "1\n"


def test_alarm_signals_do_not_hurt_the_host(make_interpreter):
    interp = make_interpreter(timeout=5)
    code = (
        "import signal\n"
        "def boom(*a):\n    raise RuntimeError('alarm')\n"
        "signal.signal(signal.SIGALRM, boom)\nsignal.alarm(1)\nprint('armed')"
    )
    outcome, _ = run_case(interp, code)
    assert outcome == "armed\n"
    # the alarm fires later inside model code (or between cells); either way the host copes
    run_case(interp, "import time\ntime.sleep(1.5)")


# -- memory, processes, files (local rlimits) -----------------------------------------------------


@linux_root
@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(2 * 1024**3)",
        "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        "x = 'a' * (3 * 1024**3)",
    ],
    ids=["one-block", "growing", "string"],
)
def test_memory_bomb_hits_the_address_space_limit(code):
    before = status_kb("VmRSS")
    with local(memory_mb=512) as interp:
        outcome, restarted = run_case(interp, code)
    assert "MemoryError" in str(outcome) or restarted
    assert status_kb("VmRSS") - before < 200 * 1024  # the host did not pay for it


@linux_root
def test_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind():
    children = children_of(os.getpid())
    transport = LocalTransport(SandboxLimits(processes=64))
    with SandboxInterpreter(transport, timeout=10) as interp:
        uid = transport.uid
        outcome, _ = run_case(interp, "import os\nwhile True:\n    os.fork()")
        assert "Resource temporarily unavailable" in str(outcome) or "TimeoutError" in str(outcome)
        assert 1 < len(processes_of({uid})) <= 64
    assert wait_until(lambda: processes_of({uid})) == []
    assert children_of(os.getpid()) <= children


@linux_root
def test_huge_file_hits_the_file_size_limit_as_an_error():
    with local(file_size_mb=10) as interp:
        code = "with open('big.bin', 'wb') as f:\n    f.write(b'0' * (50 * 1024 * 1024))"
        outcome, restarted = run_case(interp, code)
        assert not restarted and "File too large" in str(outcome)
        assert interp.execute("import os; print(os.path.getsize('big.bin'))") == "10485760\n"


# -- output --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "for _ in range(1024):\n    print('x' * (1024 * 1024 - 1))",
        "import os\nchunk = b'y' * (1024 * 1024)\nfor _ in range(1024):\n    os.write(1, chunk)",
        "import subprocess\nsubprocess.run(['head', '-c', str(1024**3), '/dev/zero'])",
    ],
    ids=["print", "fd1", "child-process"],
)
def test_a_gigabyte_of_output_is_truncated_and_the_host_stays_small(make_interpreter, code):
    interp = make_interpreter(timeout=60, max_output_chars=10_000)
    interp.execute("print('warm')")
    rss = status_kb("VmRSS")
    if not reset_peak_rss():
        pytest.skip("cannot reset the peak RSS counter here")
    out = interp.execute(code)
    growth_kb = status_kb("VmHWM") - rss
    assert len(out) < 10_000 + 200
    assert "[output truncated:" in out and "more characters not shown]" in out
    dropped = int(out.rsplit("truncated: ", 1)[1].split()[0].replace(",", ""))
    assert dropped >= GB - 10_000 - 1024
    assert growth_kb < 64 * 1024, f"host grew by {growth_kb} kB for 1 GB of output"
    assert interp.restarts == 0


# -- recursion, exits, signals, crashes ------------------------------------------------------------


def test_deep_recursion_is_a_readable_error(make_interpreter):
    interp = make_interpreter(timeout=10)
    outcome, restarted = run_case(interp, "def f(n):\n    return f(n + 1)\nf(0)")
    assert not restarted and "RecursionError" in str(outcome)


def test_c_level_recursion_past_a_raised_limit_is_survived(make_interpreter):
    """A raised recursion limit lets C code overflow the stack: a crash, then a restart."""
    interp = make_interpreter(timeout=10)
    code = (
        "import sys, json\nsys.setrecursionlimit(10**6)\n"
        "a = []\nfor _ in range(300_000):\n    a = [a]\njson.dumps(a)"
    )
    outcome, _ = run_case(interp, code)
    assert isinstance(outcome, CodeExecutionError)


@pytest.mark.parametrize(
    "code, kept",
    [
        ("import os\nos._exit(3)", False),
        ("import ctypes\nctypes.string_at(0)", False),
        ("import os\nos.closerange(3, 1024)", False),
        ("import sys\nsys.exit()", True),
        ("import sys\nsys.exit(5)", True),
        ("raise SystemExit('bye')", True),
        ("raise KeyboardInterrupt", True),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", None),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", None),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)", None),
    ],
    ids=[
        "os._exit",
        "segfault",
        "close-all-fds",
        "sys.exit",
        "sys.exit-5",
        "SystemExit",
        "KeyboardInterrupt",
        "self-SIGTERM",
        "self-SIGKILL",
        "self-SIGSTOP",
    ],
)
def test_exits_and_crashes_are_recoverable(make_interpreter, code, kept):
    interp = make_interpreter(timeout=2)
    outcome, restarted = run_case(interp, code)
    if kept is not None:
        assert restarted is not kept
        assert isinstance(outcome, CodeExecutionError)
    if kept:
        assert "SystemExit" in str(outcome) or "KeyboardInterrupt" in str(outcome)


@linux_root
@pytest.mark.parametrize(
    "code",
    [
        "import os, signal\nos.killpg(0, signal.SIGKILL)",
        "import os, signal\nos.kill(-1, signal.SIGKILL)",
        "import os, signal\nos.setsid() if os.fork() == 0 else None\nos.killpg(0, signal.SIGKILL)",
    ],
    ids=["own-group", "every-process-it-can", "escape-then-kill"],
)
def test_killing_its_own_process_group_harms_only_the_sandbox(code):
    """Local only: elsewhere `kill(-1)` from an unisolated test process could hit the host."""
    children = children_of(os.getpid())
    with local() as interp:
        run_case(interp, code)
    assert children_of(os.getpid()) <= children


@pytest.mark.parametrize(
    "code",
    [
        "import os, sys\nos.close(0)\nos.close(1)\nos.close(2)\nsys.stdin.close()",
        "import sys\nsys.stdout.close()\nsys.__stdout__.close()\nsys.stderr.close()",
        "import sys, io\nsys.stdout = io.StringIO()\nsys.__stdout__ = None\nsys.stdin = None",
        "import os\nfd = os.open(os.devnull, os.O_WRONLY)\nos.dup2(fd, 1)\nos.dup2(fd, 2)",
        "import os\nr, w = os.pipe()\nos.dup2(w, 1)\nos.dup2(r, 0)",
    ],
    ids=["close-fds", "close-streams", "replace-streams", "dup2-devnull", "dup2-pipe"],
)
def test_closing_or_replacing_stdio_does_not_break_the_channel(make_interpreter, code):
    interp = make_interpreter(timeout=5)
    _, restarted = run_case(interp, code)
    assert not restarted
    assert interp.execute("import os\nprint('p')\n_ = os.write(1, b'w\\n')") == "p\nw\n"


def test_a_script_that_never_shuts_down_leaves_no_sandbox_or_folder_behind():
    """Users forget `shutdown()`: at exit the sandbox process and its folder still go."""
    import subprocess
    import sys

    script = (
        "from fleet_rlm.sandbox.interpreter import SandboxInterpreter\n"
        "from fleet_rlm.sandbox.local import LocalTransport\n"
        "t = LocalTransport()\n"
        "i = SandboxInterpreter(t, timeout=10)\n"
        "i.execute(\"open('scratch.txt', 'w').write('x')\")\n"
        "print(t.workdir, t._proc.pid, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    workdir, pid = out.stdout.split()
    assert not os.path.exists(workdir)
    assert wait_until(lambda: os.path.exists(f"/proc/{pid}")) is False
