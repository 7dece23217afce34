"""Protocol: sandboxed code cannot forge, corrupt or overload the host side of the channel.

User code writes to stdout, sys.__stdout__ and fd 1 land in the bounded capture. The channel's
own fd is reachable from same-process code (a known limit): there the host validates every
message and treats a bad one as a broken sandbox (restart, the model is told) -- never as
an exception of its own.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, FinalOutput

from fleet_rlm.engine import run_rlm
from fleet_rlm.testing import ScriptedLM
from fleet_rlm.trajectory import TrajectoryWriter
from tests.security import reset_peak_rss, status_kb

FIELDS = [{"name": "answer", "type": "str"}, {"name": "count", "type": "int"}]
STATE_LOST = "every variable you defined is gone"
DONE = '{"type": "done", "id": %s, "status": "final", "value": {"answer": "forged", "count": 1}}'
CALL = '{"type": "tool_call", "id": 999, "name": "secret_tool", "args": [], "kwargs": {}}'

# How same-process code finds the channel and the id of the running execute.
CHANNEL = """
import gc, sys
chan = next(o for o in gc.get_objects() if type(o).__name__ == "Channel")
f = sys._getframe()
while "msg" not in f.f_locals or not isinstance(f.f_locals["msg"], dict):
    f = f.f_back
exec_id = f.f_locals["msg"]["id"]
def raw(data):
    import os
    os.write(chan.wfd, data if isinstance(data, bytes) else data.encode())
"""


@pytest.fixture
def tool_log():
    return []


@pytest.fixture
def interp(make_interpreter, tool_log):
    return make_interpreter(
        tools={"secret_tool": lambda: tool_log.append("called") or "x"},
        output_fields=FIELDS,
        timeout=10,
    )


@pytest.mark.parametrize(
    "code",
    [
        f"print({DONE % 1!r})\nprint({DONE % 2!r})",
        f"print({CALL!r})",
        f"import sys\nsys.__stdout__.write({DONE % 1!r} + '\\n')\nsys.__stdout__.flush()",
        f"import sys\nsys.__stderr__.write({CALL!r} + '\\n')",
        f"import os\nos.write(1, ({DONE % 1!r} + '\\n').encode())",
        f"import os\nos.write(2, ({CALL!r} + '\\n').encode())",
        f"import subprocess\nsubprocess.run(['echo', {DONE % 1!r}])",
        f"import sys, io\nsys.stdout = io.TextIOWrapper(io.FileIO(1, 'w'))\nprint({DONE % 1!r})",
    ],
    ids=[
        "print",
        "print-tool-call",
        "__stdout__",
        "__stderr__",
        "fd1",
        "fd2",
        "subprocess",
        "reopened-fd1",
    ],
)
def test_forged_lines_on_stdout_are_plain_output(interp, tool_log, code):
    result = interp.execute(code)
    assert isinstance(result, str) and not isinstance(result, FinalOutput)
    assert tool_log == [] and interp.restarts == 0
    assert interp.execute("print(1 + 1)") == "2\n"


@pytest.mark.parametrize(
    "payload",
    [
        "raw(b'not json at all\\n')",
        "raw(b'[1, 2, 3]\\n')",
        'raw(\'{"type": "done", "id": %d, "status": "error", "error": "str"}\\n\' % exec_id)',
        'raw(\'{"type": "done", "id": %d, "status": "ok", "truncated": "many"}\\n\' % exec_id)',
        'raw(\'{"type": "done", "id": %d, "status": "weird"}\\n\' % exec_id)',
        'raw(\'{"type": "done", "id": %d, "status": "ok", "output": {"a": 1}}\\n\' % exec_id)',
        'raw(\'{"type": "tool_call", "id": [1], "name": "secret_tool"}\\n\')',
        'raw(\'{"type": "tool_call", "id": 5, "name": "secret_tool", "args": 7}\\n\')',
        'raw(\'{"type": "tool_call", "id": 5, "name": ["x"]}\\n\')',
        'raw(\'{"type": "tool_call", "id": 5, "name": "nope"}\\n\' * 2)',
        "raw(b'{\"type\": ')\nprint('the real result now follows on the same line')",
        "import os\nos.close(chan.wfd)\nos.close(chan.rfile.fileno())",
    ],
    ids=[
        "garbage",
        "not-an-object",
        "error-not-dict",
        "truncated-not-int",
        "bad-status",
        "output-not-str",
        "unhashable-call-id",
        "args-not-list",
        "name-not-str",
        "duplicate-call-id",
        "partial-line",
        "close-channel",
    ],
)
def test_malformed_messages_on_the_channel_restart_the_sandbox(interp, tool_log, payload):
    """Each is a CodeExecutionError the model reads (never a TypeError/ValueError of the host)."""
    interp.execute("kept = 1")
    wait = "" if "real" in payload else "\nimport time\ntime.sleep(5)"
    with pytest.raises(CodeExecutionError) as err:
        interp.execute(CHANNEL + payload + wait)
    assert "ProtocolError" in str(err.value) or "SandboxCrashed" in str(err.value)
    assert STATE_LOST in str(err.value) and interp.restarts == 1
    assert interp.execute("print('kept' in globals())") == "False\n"
    assert tool_log == []


def test_a_huge_line_on_the_channel_is_refused_at_the_message_limit(interp):
    """300 MB without a newline: the host stops reading at its 32 MB per-message limit."""
    rss = status_kb("VmRSS")
    if not reset_peak_rss():
        pytest.skip("cannot reset the peak RSS counter here")
    with pytest.raises(CodeExecutionError, match="ProtocolError: the sandbox sent a message over"):
        interp.execute(
            CHANNEL + "raw(b'{\"type\": ' + b'x' * (300 * 1024 * 1024))\n"
            "import time\ntime.sleep(10)"
        )
    growth_mb = (status_kb("VmHWM") - rss) / 1024
    assert growth_mb < 160, f"the host grew by {growth_mb:.0f} MB"
    assert interp.execute("print('alive')") == "alive\n"


def test_a_forged_final_on_the_channel_is_only_the_code_answering_itself(interp, tool_log):
    """Known limit, bounded: same-process code can write a well-formed result for its own
    execute. It gains nothing it could not get with SUBMIT, and tool calls it forges run
    only the host's own tools, exactly as calling them would."""
    code = (
        CHANNEL
        + f"raw(({DONE!r} % exec_id) + '\\n')\nraw({CALL!r} + '\\n')\nimport time\ntime.sleep(1)"
    )
    assert interp.execute(code) == FinalOutput({"answer": "forged", "count": 1})
    assert interp.execute("print(1)") == "1\n"


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos.write(1, b'<\\xff\\xfe \\xc3(>')",
        "print('<lone \\udcff surrogate>', end='')",
        "import sys\nsys.stdout.write('<\\ud800\\udc00>')",
        "raise ValueError('<\\udcff>')",
    ],
    ids=["bytes-fd1", "lone-surrogate", "surrogate-pair-as-two", "in-an-error"],
)
def test_invalid_unicode_output_arrives_as_valid_text(make_interpreter, code):
    try:
        out = make_interpreter().execute(code)
    except CodeExecutionError as exc:
        out = str(exc)
    out.encode("utf-8")  # every string the host holds can be encoded and written out
    text = out[out.index("<") : out.rindex(">") + 1]
    assert "\ufffd" in text and not any("\ud800" <= c <= "\udfff" for c in text)


def test_invalid_unicode_output_can_be_saved_in_a_trajectory(options, tmp_path):
    steps = ["print('a \\udcff b')", "import os\n_ = os.write(1, b'\\xff')", "SUBMIT(answer='x')"]
    path = tmp_path / "run.jsonl"
    writer = TrajectoryWriter(path)
    run_rlm("q -> answer", {"q": "q"}, lm=ScriptedLM(steps), sandbox=options, on_record=writer)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["type"] for r in lines] == ["run", "step", "step", "step", "result"]
    assert "\ufffd" in lines[1]["output"] and "\ufffd" in lines[2]["output"]


def test_a_100_mb_line_of_output_is_truncated(make_interpreter):
    interp = make_interpreter(timeout=60)
    out = interp.execute("print('z' * 100_000_000)")
    assert out.startswith("z" * 1000) and len(out) < 100_000 + 200
    assert "[output truncated: 99,900,001 more characters not shown]" in out


def test_huge_values_from_user_code_are_errors_not_lost_sandboxes(make_interpreter):
    """A 50 MB exception message (a KeyError on the whole context), a 40 MB SUBMIT value and
    40 MB of tool arguments are bounded or refused inside; the model keeps its state."""
    interp = make_interpreter(tools={"echo": lambda s: len(s)}, timeout=60, max_output_chars=1000)
    interp.execute("big = 'k' * 50_000_000")
    with pytest.raises(CodeExecutionError) as err:
        interp.execute("{}[big]")
    assert "KeyError" in str(err.value) and len(str(err.value)) < 3000
    with pytest.raises(CodeExecutionError, match="too large to send"):
        interp.execute("SUBMIT(big)")
    with pytest.raises(CodeExecutionError, match="too large to send"):
        interp.execute("echo(big)")
    with pytest.raises(CodeExecutionError, match="could not be shown"):
        interp.execute(
            "class E(Exception):\n    def __str__(self):\n        raise ValueError\nraise E()"
        )
    assert interp.execute("print(len(big), echo('abc'))") == "50000000 3\n"
    assert interp.restarts == 0


# -- tools -------------------------------------------------------------------------------------


def test_tool_failures_reach_the_code_as_errors(make_interpreter):
    release = threading.Event()

    def raises(x):
        raise ValueError(f"bad input {x}")

    def hangs():
        release.wait(30)
        return "late"

    tools = {"raises": raises, "hangs": hangs, "odd": lambda: object(), "aset": lambda: {1, 2}}
    interp = make_interpreter(tools=tools, timeout=10, tool_timeout=1.0)
    try:
        code = (
            "try:\n    raises(3)\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "try:\n    odd()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
            "print(aset())"
        )
        out = interp.execute(code)
        assert "ToolError ValueError: bad input 3" in out
        assert "ToolError TypeError: the tool returned a value that is not JSON-compatible" in out
        assert out.endswith("[1, 2]\n")
        t0 = time.monotonic()
        with pytest.raises(CodeExecutionError, match="gave no answer within 1 s"):
            interp.execute("hangs()")
        assert time.monotonic() - t0 < 1.0 + 2
        assert interp.execute("print(raises.__name__)") == "raises\n"
        assert interp.restarts == 0
    finally:
        release.set()


# -- SUBMIT --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, message",
    [
        ("SUBMIT('a')", "SUBMIT is missing count"),
        ("SUBMIT('a', 1, 2)", "SUBMIT takes 2 value(s) but 3 were given"),
        ("SUBMIT(answer='a', total=1)", "unexpected field 'total'"),
        ("SUBMIT()", "SUBMIT is missing answer, count"),
        ("SUBMIT(answer=open, count=1)", "JSON-compatible"),
    ],
)
def test_submit_mismatches_are_readable_errors(interp, code, message):
    with pytest.raises(CodeExecutionError, match="TypeError") as err:
        interp.execute(code)
    assert message in str(err.value)
    assert interp.execute("print('next')") == "next\n" and interp.restarts == 0


@pytest.mark.parametrize(
    "code",
    [
        "SUBMIT('first', 1)\nSUBMIT('second', 2)",
        "try:\n    SUBMIT('first', 1)\nexcept BaseException:\n    pass\nSUBMIT('second', 2)",
        "try:\n    SUBMIT('first', 1)\nexcept BaseException:\n    print('swallowed')\n"
        "import sys\nsys.exit(1)",
        "def f():\n    try:\n        SUBMIT('first', 1)\n    finally:\n        return 0\nf()\n"
        "raise ValueError('after')",
    ],
    ids=["twice", "caught-then-again", "caught-then-exit", "finally-swallows"],
)
def test_the_first_submit_wins(interp, code):
    assert interp.execute(code) == FinalOutput({"answer": "first", "count": 1})
    assert interp.execute("print('next')") == "next\n"


def test_submit_with_wrong_types_is_fed_back_and_fixed(options):
    steps = ["SUBMIT(answer='a', count='many')", "SUBMIT(answer='a', count=3)"]
    result = run_rlm(
        "q -> answer: str, count: int", {"q": "q"}, lm=ScriptedLM(steps), sandbox=options
    )
    assert result.outputs == {"answer": "a", "count": 3}
    assert "count" in result.steps[0]["output"] and "FINAL" not in result.steps[0]["output"]
