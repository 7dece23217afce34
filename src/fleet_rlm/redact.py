"""Redaction of secrets from anything we print or save (errors, trajectories)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Shapes of common provider keys, for secrets we were never told about.
_KEY_SHAPES = re.compile(
    r"\b(sk-[A-Za-z0-9_\-]{16,}|sk-ant-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|hf_[A-Za-z0-9]{30,}|ak-[A-Za-z0-9]{16,}|as-[A-Za-z0-9]{16,}"
    r"|xox[abpr]-[A-Za-z0-9\-]{10,})"
)
MASK = "[REDACTED]"


def secret_values(environ: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Values of variables whose names look secret (8+ characters, longest first)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 8}
    values |= {v for v in extra if v and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


class Redactor:
    """Replaces known secret values and key-shaped strings with a mask."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        self.secrets = list(secret_values() if secrets is None else secrets)

    def __call__(self, text: str) -> str:
        if not isinstance(text, str) or not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _KEY_SHAPES.sub(MASK, text)

    def deep(self, value):
        """Redact every string inside JSON-like data."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        return value
