"""Loading the user's documents into one context, with a map back to files and lines."""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# Folders never worth reading as documents.
_SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    "node_modules",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    "dist",
    "build",
}
_SNIFF = 8192


class DocsError(ValueError):
    """A documents path cannot be used; the message names it and says why."""


@dataclass
class DocFile:
    path: str
    start: int  # offset of the file's text in the corpus
    end: int
    line_starts: list[int] = field(repr=False, default_factory=list)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset - self.start)


@dataclass
class Corpus:
    """The documents as one string (what the sandbox gets) plus where each file sits in it."""

    text: str
    files: list[DocFile]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def locate(self, offset: int) -> str | None:
        """`path:line` for a character offset into `text`."""
        for f in self.files:
            if f.start <= offset < max(f.end, f.start + 1):
                return f"{f.path}:{f.line_of(offset)}"
        return None

    def cite(self, citation: str) -> str:
        """Resolve a model's citation: keep a valid `path:line`, or find a quoted snippet."""
        citation = citation.strip()
        match = re.match(r"^(.+?):(\d+)(?:-\d+)?\b", citation)
        if match and any(f.path == match.group(1) for f in self.files):
            return citation
        snippet = citation.strip("\"'` ")
        if len(snippet) >= 12:
            offset = self.text.find(snippet)
            if offset >= 0:
                return f'{self.locate(offset)}  "{_clip(snippet, 80)}"'
        return citation


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _read_text(path: Path) -> str:
    """UTF-8 text or a DocsError saying why not."""
    try:
        data = path.read_bytes()
    except PermissionError:
        raise DocsError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise DocsError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\x00" in data[:_SNIFF]:
        raise DocsError(f"{path} looks binary, not text; pass text, Markdown or code files")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocsError(
            f"{path} is not UTF-8 text (bad byte at offset {exc.start}); convert it, "
            "e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _walk(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        out += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return out


def load_documents(paths: list[str | Path], *, max_chars: int | None = None) -> Corpus:
    """Read files and folders (recursively) into one context.

    A file named directly must be readable, non-empty UTF-8 text; inside a folder, binary,
    undecodable or empty files are skipped and listed in `skipped`. With several files, each
    starts with a `=== FILE: path ===` line so the model can say where an answer came from.
    """
    if not paths:
        raise DocsError("no documents given: pass --docs-path FILE_OR_FOLDER")
    entries: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DocsError(f"Docs path does not exist: {raw}")
        if path.is_dir():
            found = 0
            for file in _walk(path):
                try:
                    text = _read_text(file)
                except DocsError as exc:
                    skipped.append((str(file), str(exc)))
                    continue
                if not text.strip():
                    skipped.append((str(file), "empty"))
                    continue
                entries.append((str(file), text))
                found += 1
            if not found:
                raise DocsError(f"{raw} holds no readable text files ({len(skipped)} skipped)")
        else:
            text = _read_text(path)
            if not text.strip():
                raise DocsError(f"{raw} is empty; nothing to analyse")
            entries.append((str(path), text))
    return _assemble(entries, skipped, max_chars)


def _assemble(entries: list[tuple[str, str]], skipped: list, max_chars: int | None) -> Corpus:
    parts: list[str] = []
    files: list[DocFile] = []
    offset = 0
    multi = len(entries) > 1
    for path, text in entries:
        if multi:
            header = f"=== FILE: {path} ===\n"
            parts.append(header)
            offset += len(header)
        starts = [0] + [m.end() for m in re.finditer("\n", text)]
        files.append(DocFile(path, offset, offset + len(text), starts))
        parts.append(text)
        offset += len(text)
        if multi:
            parts.append("\n\n")
            offset += 2
    text = "".join(parts)
    if max_chars is not None:
        if max_chars <= 0:
            raise DocsError(f"--chars must be positive, got {max_chars}")
        text = text[:max_chars]
        files = [f for f in files if f.start < max_chars]
    return Corpus(text=text, files=files, skipped=skipped)
