"""Shared fixtures: every sandbox test runs on each backend in BACKENDS."""

from __future__ import annotations

import pytest

from fleet_rlm.engine import SandboxOptions
from fleet_rlm.sandbox.interpreter import SandboxInterpreter

# "modal" runs the real ModalTransport against a fake modal SDK (tests/fake_modal.py).
BACKENDS = ["local", "modal"]


def make_options(backend: str, **kw) -> SandboxOptions:
    if backend == "modal":
        from tests.fake_modal import fake_modal_options

        return fake_modal_options(**kw)
    return SandboxOptions(backend=backend, **kw)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def options(backend) -> SandboxOptions:
    return make_options(backend)


@pytest.fixture
def make_interpreter(backend):
    """Build interpreters on the current backend; all are shut down after the test."""
    made: list[SandboxInterpreter] = []

    def factory(tools=None, output_fields=None, **kw) -> SandboxInterpreter:
        opts = make_options(backend)
        interp = SandboxInterpreter(
            opts.transport(), tools=tools, output_fields=output_fields, **kw
        )
        made.append(interp)
        return interp

    yield factory
    for interp in made:
        interp.shutdown()


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    """A clean working folder with an empty .env and a configured (never called) model.

    CLI tests replace `fleet_rlm.lm.make_lms` with a scripted LM; the configured model keeps
    them independent of what this machine has installed (e.g. the offline model).
    """
    monkeypatch.chdir(tmp_path)
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    monkeypatch.setenv("FLEET_RLM_ENV_FILE", str(env_file))
    monkeypatch.setenv("DSPY_LM_MODEL", "openai/scripted-test")
    monkeypatch.setenv("DSPY_LLM_API_KEY", "test-key-never-sent")
    return tmp_path
