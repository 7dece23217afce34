"""Settings from the environment and a `.env` file (which never overrides what is already set)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values, find_dotenv
from dotenv.parser import parse_stream

BACKENDS = ("local", "modal")

# Where a provider's SDK looks for its key, when DSPY_LLM_API_KEY / DSPY_LM_API_KEY are unset.
PROVIDER_KEY_VARS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "vertex_ai": "VERTEXAI_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "cohere": "COHERE_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
    "azure": "AZURE_API_KEY",
}
# Providers that run without a key (local servers).
KEYLESS_PROVIDERS = {"ollama", "ollama_chat", "lm_studio", "hosted_vllm", "llamafile", "local"}

NOT_CONFIGURED = (
    "Planner LM not configured: set DSPY_LM_MODEL and DSPY_LLM_API_KEY in .env (or the "
    "environment), or use the offline model with --lm local (needs `uv sync --extra local`)."
)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class LMSettings:
    model: str
    api_key: str | None = None
    api_base: str | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Settings:
    lm: LMSettings | None
    sub_lm: LMSettings | None
    sandbox: str = "local"
    env_file: Path | None = None

    def require_lm(self) -> LMSettings:
        if self.lm is None:
            raise ConfigError(NOT_CONFIGURED)
        return self.lm


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file (quotes, comments, `export`), refusing malformed lines by number."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; is it really a .env file?") from None
    if "\x00" in text:
        raise ConfigError(f"{path} contains binary data; is it really a .env file?")
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raw = binding.original.string
            # dotenv counts from the blank lines before the bad one; never echo the line itself:
            # it may hold a secret.
            line = binding.original.line + len(raw) - len(raw.lstrip("\n"))
            raise ConfigError(
                f"{path}, line {line}: not a KEY=value line; write KEY=value "
                "(quote values with spaces or #)"
            )
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def find_env_file(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get("FLEET_RLM_ENV_FILE"):
        return Path(os.environ["FLEET_RLM_ENV_FILE"])
    found = find_dotenv(usecwd=True)
    return Path(found) if found else None


def load_settings(
    env_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    apply: bool = True,
) -> Settings:
    """Merge the environment with the .env file; existing variables win.

    With `apply`, values from the file are also put into `os.environ` (without overriding),
    so LiteLLM finds provider variables the way users expect.
    """
    env = dict(os.environ if environ is None else environ)
    path = find_env_file(env_file)
    if path is not None:
        for key, value in read_env_file(path).items():
            if key not in env:
                env[key] = value
                if apply and environ is None:
                    os.environ[key] = value
    sandbox = env.get("FLEET_RLM_SANDBOX", "local").strip().lower() or "local"
    if sandbox not in BACKENDS:
        raise ConfigError(
            f"unknown sandbox backend {sandbox!r} (FLEET_RLM_SANDBOX); choose one of: "
            f"{', '.join(BACKENDS)}"
        )
    lm = _lm_settings(
        env,
        "DSPY_LM_MODEL",
        ("DSPY_LLM_API_KEY", "DSPY_LM_API_KEY"),
        "DSPY_LM_API_BASE",
        "DSPY_LM_MAX_TOKENS",
    )
    sub = _lm_settings(
        env,
        "DSPY_SUB_LM_MODEL",
        ("DSPY_SUB_LM_API_KEY",),
        "DSPY_SUB_LM_API_BASE",
        "DSPY_SUB_LM_MAX_TOKENS",
        fallback=lm,
    )
    return Settings(lm=lm, sub_lm=sub, sandbox=sandbox, env_file=path)


def _lm_settings(
    env: Mapping[str, str],
    model_var: str,
    key_vars: tuple[str, ...],
    base_var: str,
    tokens_var: str,
    fallback: LMSettings | None = None,
) -> LMSettings | None:
    model = env.get(model_var, "").strip()
    if not model:
        return None
    api_base = env.get(base_var, "").strip() or (fallback.api_base if fallback else None)
    api_key = next((env[v].strip() for v in key_vars if env.get(v, "").strip()), None)
    if api_key is None and fallback is not None and fallback.api_base == api_base:
        api_key = fallback.api_key  # the sub-LM on the same endpoint shares its key
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    if api_key is None and provider in PROVIDER_KEY_VARS:
        api_key = env.get(PROVIDER_KEY_VARS[provider], "").strip() or None
    if model == "local":
        return LMSettings(model="local")
    if api_key is None and provider not in KEYLESS_PROVIDERS and not api_base:
        raise ConfigError(
            f"{model_var}={model} is set but no API key was found: set {key_vars[0]}"
            + (f" (or {PROVIDER_KEY_VARS[provider]})" if provider in PROVIDER_KEY_VARS else "")
            + " in .env or the environment"
        )
    max_tokens = None
    raw = env.get(tokens_var, "").strip()
    if raw:
        try:
            max_tokens = int(raw)
        except ValueError:
            raise ConfigError(f"{tokens_var} must be a whole number, got {raw!r}") from None
        if max_tokens <= 0:
            raise ConfigError(f"{tokens_var} must be positive, got {max_tokens}")
    return LMSettings(model=model, api_key=api_key, api_base=api_base, max_tokens=max_tokens)


def check_modal_shadowing(directory: Path | None = None) -> None:
    """A stray modal.py (or its .pyc) in the working directory hides the real `modal` package."""
    directory = directory or Path.cwd()
    culprits = [directory / "modal.py", *sorted((directory / "__pycache__").glob("modal.*.pyc"))]
    found = [str(p) for p in culprits if p.exists()]
    if found:
        raise ConfigError(
            f"{found[0]} shadows the `modal` package: rename or delete it (and "
            "__pycache__/modal.*.pyc), then run again"
        )
