"""Secrets: host keys never reach sandboxed code, and never leave the engine unredacted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from dspy.primitives.code_interpreter import CodeExecutionError

from fleet_rlm.engine import RunError, run_rlm
from fleet_rlm.sandbox.interpreter import SandboxInterpreter
from fleet_rlm.sandbox.local import LocalTransport
from fleet_rlm.testing import ScriptedLM
from tests.security import linux_root, visible_host_dir

ENV_SECRETS = {
    "OPENAI_API_KEY": "sk-hostenv-0123456789abcdefXYZ",
    "DSPY_LLM_API_KEY": "dspy-hostenv-secret-4242",
    "GITHUB_TOKEN": "ghp_hostenvtoken000000000000000000000",
    "MODAL_TOKEN_SECRET": "as-hostenvmodalsecret123456",
}
FILE_SECRET = "sk-dotenv-file-secret-9876543210abc"

# Everything sandboxed code could try to learn the host's secrets from.
SNOOP = r"""
import os
seen = [repr(dict(os.environ))]
for path in ["/proc/self/environ", "/proc/1/environ", "/proc/{host}/environ",
             "/proc/{host}/cmdline", *[f"/proc/{{p}}/environ" for p in os.listdir("/proc")
                                       if p.isdigit()]]:
    try:
        seen.append(open(path, "rb").read().decode("utf-8", "replace"))
    except OSError as exc:
        seen.append(f"{{path}}: {{type(exc).__name__}}")
for folder in {folders!r}:
    try:
        names = os.listdir(folder)
    except OSError as exc:
        seen.append(f"{{folder}}: {{type(exc).__name__}}")
        continue
    seen.append(f"{{folder}}: {{names}}")
    for name in names:
        try:
            with open(os.path.join(folder, name), "rb") as f:
                seen.append(f.read(4096).decode("utf-8", "replace"))
        except OSError as exc:
            seen.append(f"{{name}}: {{type(exc).__name__}}")
for path in {files!r}:
    try:
        seen.append(f"{{path}}=" + open(path, "rb").read().decode("utf-8", "replace"))
    except OSError as exc:
        seen.append(f"{{path}}: {{type(exc).__name__}}")
print("\n".join(seen))
"""


def snoop(interp: SandboxInterpreter, folders=(), files=()) -> str:
    code = SNOOP.format(
        host=os.getpid(), folders=list(map(str, folders)), files=list(map(str, files))
    )
    return interp.execute(code)


def assert_no_secret(text: str) -> None:
    for value in [*ENV_SECRETS.values(), FILE_SECRET]:
        assert value not in text, f"secret {value[:8]}... is visible inside the sandbox"


@pytest.fixture
def host_secrets(monkeypatch):
    for key, value in ENV_SECRETS.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def project(monkeypatch):
    """A host project folder (the cwd) with a world-readable .env, outside /tmp and home."""
    path = visible_host_dir()
    (path / ".env").write_text(f"OPENAI_API_KEY={FILE_SECRET}\n")
    (path / "notes.txt").write_text(f"token: {FILE_SECRET}\n")
    (path / "sub").mkdir()
    for p in (path / ".env", path / "notes.txt"):
        p.chmod(0o644)
    (path / "sub").chmod(0o755)
    monkeypatch.chdir(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@linux_root
def test_env_and_dotenv_are_invisible(host_secrets, project):
    """os.environ, /proc/*/environ (host pid, pid 1), files in the cwd, the .env path."""
    with SandboxInterpreter(LocalTransport(), timeout=30) as interp:
        out = snoop(interp, folders=[project, project / "sub"], files=[project / ".env"])
        env = interp.execute("import os; print(sorted(os.environ))")
    assert_no_secret(out)
    assert "OPENAI" not in env and "DSPY" not in env and "TOKEN" not in env


@linux_root
def test_the_snoop_would_find_them_without_isolation(host_secrets, project):
    """Control: the same code without isolation does see the .env (the test has teeth)."""
    with SandboxInterpreter(LocalTransport(isolate=False), timeout=30) as interp:
        out = snoop(interp, folders=[project], files=[project / ".env"])
    assert FILE_SECRET in out


@linux_root
def test_dotenv_in_a_parent_of_cwd_is_masked(host_secrets, project, monkeypatch):
    """The host finds .env in parent folders (find_dotenv); so must the mask."""
    monkeypatch.chdir(project / "sub")
    with SandboxInterpreter(LocalTransport(), timeout=30) as interp:
        assert_no_secret(snoop(interp, folders=[project], files=[project / ".env"]))


@linux_root
def test_dotenv_of_a_flat_project_on_sys_path_is_masked(host_secrets, monkeypatch):
    """~/proj, a flat-layout project installed editable in its own venv, is on the driver's
    sys.path, so the driver re-binds it (read-only) for Python: its .env must stay masked."""
    home = visible_host_dir()  # plays /home/alice
    project = home / "proj"
    project.mkdir(mode=0o755)
    (project / ".env").write_text(f"OPENAI_API_KEY={FILE_SECRET}\n")
    (project / ".env").chmod(0o644)
    (project / "app.py").write_text("X = 1\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(project)
    try:
        venv = project / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next(venv.glob("lib/python*/site-packages"))
        (site / "project.pth").write_text(f"{project}\n")
        transport = LocalTransport(python=str(venv / "bin" / "python"))
        with SandboxInterpreter(transport, timeout=30) as interp:
            assert interp.execute("import app; print(app.X)") == "1\n"  # re-bound for Python
            assert_no_secret(snoop(interp, folders=[project], files=[project / ".env"]))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_secrets_are_redacted_from_records_and_errors(options, host_secrets):
    """A key that reaches sandbox output (printed, raised, returned by a tool, in an input)
    comes out [REDACTED] in every record; a failing run's error message too."""
    key = ENV_SECRETS["OPENAI_API_KEY"]

    def lookup(name: str) -> str:
        """A host tool that (wrongly) returns a secret."""
        return os.environ.get(name, "")

    steps = [
        f"print('the key is {key}')",
        "v = lookup('DSPY_LLM_API_KEY'); print(v)",
        f"raise ValueError('bad key {key}')",
        "SUBMIT(answer='done ' + v)",
    ]
    result = run_rlm(
        "document -> answer",
        {"document": f"config: {key}"},
        lm=ScriptedLM(steps),
        tools=[lookup],
        sandbox=options,
    )
    text = json.dumps(result.records)
    assert_no_secret(text)
    assert text.count("[REDACTED]") >= 5
    assert "the key is [REDACTED]" in result.steps[0]["output"]
    assert result.steps[1]["sub_calls"][0]["response"] == "[REDACTED]"
    assert "ValueError: bad key [REDACTED]" in result.steps[2]["output"]

    def leak(_: str):
        raise RuntimeError(f"provider said: invalid key {key}")

    with pytest.raises(RunError) as err:
        run_rlm("question -> answer", {"question": "q"}, lm=ScriptedLM([leak]), sandbox=options)
    assert key not in str(err.value) and "[REDACTED]" in str(err.value)
    assert_no_secret(json.dumps(err.value.records))


def test_sandbox_errors_do_not_carry_host_paths_or_env(make_interpreter, host_secrets):
    """Error messages come from the sandbox only: no host env, no driver frames."""
    interp = make_interpreter()
    with pytest.raises(CodeExecutionError) as err:
        interp.execute("import os\nraise RuntimeError(os.environ.get('OPENAI_API_KEY'))")
    assert_no_secret(str(err.value))
    assert "driver.py" not in str(err.value)
