"""Bad input: malformed settings and impossible limits fail early with a clear message."""

from __future__ import annotations

import pytest
from dspy.primitives.code_interpreter import CodeInterpreterError

from fleet_rlm.config import ConfigError, load_settings, read_env_file
from fleet_rlm.engine import SandboxOptions, run_rlm
from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalTransport, SandboxLimits
from fleet_rlm.testing import ScriptedLM


@pytest.mark.parametrize(
    "text, line",
    [
        ("A=1\nB C\n", 2),
        ("A=1\n=value\n", 2),
        ("A=1\n\n=value\n", 3),
        ("\n\n\nbad line\n", 4),
        ('A=1\nB="unterminated\nC=3\n', 2),
        ("# comment\nA=1\n  B = 'x' y\n", 3),
    ],
)
def test_malformed_env_file_names_the_line(tmp_path, text, line):
    path = tmp_path / ".env"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"line {line}: not a KEY=value line"):
        read_env_file(path)


def test_malformed_env_file_error_does_not_echo_the_secret(tmp_path):
    path = tmp_path / ".env"
    path.write_text('OPENAI_API_KEY="sk-proj-abcdefghijklmnopqrstuvwxyz0123\n')
    with pytest.raises(ConfigError) as err:
        read_env_file(path)
    assert "sk-proj-abc" not in str(err.value)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x01\x02ELF\xff\xfe\x00", "not UTF-8 text|binary data"),
        (b"A=1\x00B=2\n", "binary data"),
        (b"\xff\xfeA\x00=\x001\x00", "not UTF-8 text|binary data"),
    ],
    ids=["garbage", "nul-byte", "utf16"],
)
def test_binary_env_file_is_refused(tmp_path, data, message):
    path = tmp_path / ".env"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=message):
        read_env_file(path)


def test_missing_env_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="env file not found"):
        read_env_file(tmp_path / "nope.env")


@pytest.mark.parametrize("value", ["foo", "docker", "LOCAL2"])
def test_unknown_backend_is_a_config_error(tmp_path, value):
    env = tmp_path / ".env"
    env.write_text(f"FLEET_RLM_SANDBOX={value}\n")
    with pytest.raises(
        ConfigError, match=rf"unknown sandbox backend '{value.lower()}'.*local, modal"
    ):
        load_settings(env_file=env, environ={})
    with pytest.raises(ConfigError, match="unknown sandbox backend"):
        load_settings(environ={"FLEET_RLM_SANDBOX": value}, apply=False)
    with pytest.raises(ValueError, match=f"unknown sandbox backend '{value}'"):
        SandboxOptions(backend=value)


@pytest.mark.parametrize(
    "name", ["memory_mb", "cpu_seconds", "file_size_mb", "processes", "open_files"]
)
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_sandbox_limits_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"sandbox limit {name} must be positive, got {value}"):
        SandboxLimits(**{name: value})


@pytest.mark.parametrize("name", ["max_iterations", "max_llm_calls", "max_output_chars"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_run_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be positive, got {value}"):
        run_rlm("q -> a", {"q": "q"}, lm=ScriptedLM(["SUBMIT(a='x')"]), **{name: value})


@pytest.mark.parametrize(
    "name",
    [
        "timeout",
        "tool_timeout",
        "start_timeout",
        "max_output_chars",
        "max_message_bytes",
        "tool_workers",
    ],
)
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_interpreter_settings_are_refused(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be positive, got {value}"):
        SandboxInterpreter(LocalTransport(), **{name: value})


@pytest.mark.parametrize("name", ["timeout", "tool_timeout", "max_output_chars"])
def test_non_positive_sandbox_options_are_refused(name):
    with pytest.raises(ValueError, match=rf"sandbox {name} must be positive, got 0"):
        SandboxOptions(**{name: 0})


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"1abc": 1}, "is not a Python identifier"),
        ({"a b": 1}, "is not a Python identifier"),
        ({"SUBMIT": 1}, "would replace a sandbox function"),
        ({"tool": 1}, "would replace a sandbox function"),
    ],
)
def test_bad_variables_and_code_are_refused_before_reaching_the_sandbox(
    make_interpreter, variables, message
):
    interp = make_interpreter(tools={"tool": lambda: 1})
    with pytest.raises(CodeInterpreterError, match=message):
        interp.execute("print(1)", variables)
    with pytest.raises(CodeInterpreterError, match="code must be a string"):
        interp.execute(b"print(1)")  # type: ignore[arg-type]
    with pytest.raises(SyntaxError):
        interp.execute("print(1)\x00")
    assert interp.execute("print('fine')", {"ok_name": "\udcff surrogate in a value"}) == "fine\n"
