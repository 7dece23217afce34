"""Settings from .env and the environment."""

from __future__ import annotations

import pytest

from fleet_rlm.config import (
    ConfigError,
    LMSettings,
    check_modal_shadowing,
    load_settings,
    read_env_file,
)


def write(tmp_path, text: str):
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_env_file_quotes_comments_export(tmp_path):
    path = write(
        tmp_path,
        """
# comment
export DSPY_LM_MODEL="openai/gpt-4o-mini"
DSPY_LLM_API_KEY='sk-quoted # not a comment'
DSPY_LM_API_BASE=https://proxy.example  # trailing comment
DSPY_LM_MAX_TOKENS=4096
""",
    )
    s = load_settings(path, environ={})
    assert s.lm.model == "openai/gpt-4o-mini"
    assert s.lm.api_key == "sk-quoted # not a comment"
    assert s.lm.api_base == "https://proxy.example"
    assert s.lm.max_tokens == 4096
    assert s.sandbox == "local" and s.sub_lm is None


def test_environment_wins_over_env_file(tmp_path):
    path = write(tmp_path, "DSPY_LM_MODEL=openai/from-file\nDSPY_LLM_API_KEY=file-key-123\n")
    s = load_settings(path, environ={"DSPY_LM_MODEL": "openai/from-env"})
    assert s.lm.model == "openai/from-env" and s.lm.api_key == "file-key-123"


@pytest.mark.parametrize(
    "env, key",
    [
        ({"DSPY_LM_API_KEY": "second"}, "second"),
        ({"DSPY_LLM_API_KEY": "first", "DSPY_LM_API_KEY": "second"}, "first"),
        ({"OPENAI_API_KEY": "provider"}, "provider"),
    ],
)
def test_api_key_fallbacks(tmp_path, env, key):
    s = load_settings(write(tmp_path, ""), environ={"DSPY_LM_MODEL": "openai/x", **env})
    assert s.lm.api_key == key


def test_provider_key_by_model_prefix(tmp_path):
    env = {"DSPY_LM_MODEL": "anthropic/claude", "ANTHROPIC_API_KEY": "ant-key"}
    assert load_settings(write(tmp_path, ""), environ=env).lm.api_key == "ant-key"


def test_sub_lm_inherits_endpoint_and_key(tmp_path):
    env = {
        "DSPY_LM_MODEL": "openai/big",
        "DSPY_LLM_API_KEY": "k1",
        "DSPY_SUB_LM_MODEL": "openai/small",
    }
    s = load_settings(write(tmp_path, ""), environ=env)
    assert s.sub_lm.model == "openai/small" and s.sub_lm.api_key == "k1"


def test_missing_model_gives_guidance(tmp_path):
    s = load_settings(write(tmp_path, ""), environ={})
    with pytest.raises(ConfigError, match="Planner LM not configured"):
        s.require_lm()


def test_model_without_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no API key"):
        load_settings(write(tmp_path, ""), environ={"DSPY_LM_MODEL": "openai/x"})


def test_keyless_local_servers(tmp_path):
    s = load_settings(write(tmp_path, ""), environ={"DSPY_LM_MODEL": "ollama_chat/llama3"})
    assert s.lm.api_key is None
    s = load_settings(write(tmp_path, ""), environ={"DSPY_LM_MODEL": "local"})
    assert s.lm.model == "local"


@pytest.mark.parametrize(
    "text, message",
    [
        ("GOOD=1\nthis is not valid\n", "line 2: not a KEY=value"),
        ('KEY="unterminated\n', "line 1"),
    ],
)
def test_malformed_env_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_env_file(write(tmp_path, text))


def test_binary_env_file(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"\x00\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8|binary"):
        read_env_file(path)


@pytest.mark.parametrize("bad", ["DSPY_LM_MAX_TOKENS=lots", "DSPY_LM_MAX_TOKENS=0"])
def test_bad_max_tokens(tmp_path, bad):
    env = {"DSPY_LM_MODEL": "openai/x", "DSPY_LLM_API_KEY": "k"}
    with pytest.raises(ConfigError, match="DSPY_LM_MAX_TOKENS"):
        load_settings(write(tmp_path, bad), environ=env)


def test_unknown_backend(tmp_path):
    with pytest.raises(ConfigError, match="unknown sandbox backend 'docker'"):
        load_settings(write(tmp_path, ""), environ={"FLEET_RLM_SANDBOX": "docker"})


def test_modal_shadowing_guard(tmp_path):
    check_modal_shadowing(tmp_path)
    (tmp_path / "modal.py").write_text("")
    with pytest.raises(ConfigError, match="shadows the `modal` package"):
        check_modal_shadowing(tmp_path)
    (tmp_path / "modal.py").unlink()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "modal.cpython-311.pyc").write_bytes(b"")
    with pytest.raises(ConfigError):
        check_modal_shadowing(tmp_path)


def test_keyless_endpoint_builds_an_lm():
    from fleet_rlm.lm import make_lm

    lm = make_lm(LMSettings(model="openai/served", api_base="http://127.0.0.1:9/v1"))
    assert lm.model == "openai/served" and lm.kwargs["api_key"] == "no-key"
