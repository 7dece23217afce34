#!/usr/bin/env python3
"""Build rlm_content/dspy-knowledge/dspy-doc.txt from the installed ``dspy`` package.

Why: the RLM demos need a long, realistic document to explore (several MB, far past a model's
comfortable prompt). Generating it from the installed package's own docstrings and source keeps
it reproducible offline, versioned with the dependency, and free of licence questions about
scraped web pages.

What goes in, per public module of ``dspy`` (sorted by name): the module docstring, then every
public class and function *defined* in that module (sorted by name) with its signature and
docstring, then each class's own public methods/properties. dspy's docstrings alone are about
0.6 MB, so the source of every public function and method (docstring stripped, since it is
already printed) is included as a ``python`` code block to pass 1 MB.

Determinism: no timestamps, memory addresses, hash-ordered set reprs or machine paths end up in
the text (defaults are re-rendered, paths are replaced by placeholders). Modules that fail to
import are listed, with the exception type only, in a final section; modules known to have
import-time side effects are never imported.

Usage: ``uv run python scripts/build_dspy_corpus.py [--output PATH] [--no-source]
[--module PREFIX ...]``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import site
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# LiteLLM fetches a price list from the network at import time unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "rlm_content" / "dspy-knowledge" / "dspy-doc.txt"
FORMAT_VERSION = 1

# Importing these runs code meant for a subprocess (dup2 over stdout/stderr, protocol loops).
SKIP_MODULE_PATTERNS = (re.compile(r"(^|\.)\w*_worker$"), re.compile(r"(^|\.)__main__$"))

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_KEEP_DUNDERS = ("__init__", "__call__")


def header_line(package: str = "dspy") -> str:
    """First line of the corpus; the test compares it with the committed file's."""
    version = getattr(importlib.import_module(package), "__version__", "unknown")
    return f"# {package} {version} API reference (generated, format {FORMAT_VERSION})"


# --- stable text -----------------------------------------------------------------------------


def _path_replacements() -> list[tuple[str, str]]:
    """Machine-specific prefixes, longest first, and the placeholder that replaces each."""
    pairs: list[tuple[str, str]] = []
    for sp in [*site.getsitepackages(), site.getusersitepackages()]:
        pairs.append((sp, "<site-packages>"))
    pairs += [
        (sys.prefix, "<prefix>"),
        (sys.base_prefix, "<python>"),
        (str(REPO_ROOT), "<repo>"),
        (os.path.expanduser("~"), "~"),
    ]
    pairs = [(a, b) for a, b in pairs if a and a not in ("/", ".")]
    return sorted(set(pairs), key=lambda p: (-len(p[0]), p[0]))


_REPLACEMENTS = _path_replacements()


def stable(text: str) -> str:
    """Remove what differs between runs or machines: addresses and local paths."""
    text = _ADDRESS.sub("", text)
    for old, new in _REPLACEMENTS:
        text = text.replace(old, new)
    return text


class _Repr:
    """A default value shown by a fixed string (inspect.Signature prints repr(default))."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _stable_repr(value: Any) -> str:
    if isinstance(value, (set, frozenset)):
        inner = ", ".join(sorted(_stable_repr(v) for v in value))
        if isinstance(value, frozenset):
            return f"frozenset({{{inner}}})"
        return f"{{{inner}}}" if value else "set()"
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return stable(text)


def signature_text(obj: Any) -> str | None:
    """``(a: int, b='x') -> str`` with deterministic defaults, or None when unavailable."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = [
        p.replace(default=_Repr(_stable_repr(p.default))) if p.default is not p.empty else p
        for p in sig.parameters.values()
    ]
    try:
        text = str(sig.replace(parameters=params))
    except Exception:
        return None
    return stable(text)


def clean_doc(doc: str) -> str:
    """inspect.cleandoc, also right for a notice paragraph prepended to an indented docstring.

    dspy's ``@experimental`` turns ``\"\"\"Summary.\n    details`` into
    ``    Experimental: ...\n\nSummary.\n    details``: two "first lines", which cleandoc alone
    leaves half-indented. An indented first line followed by a blank line marks that case.
    """
    head, sep, rest = doc.partition("\n\n")
    if sep and head[:1].isspace() and head.strip() and "\n" not in head.strip():
        return inspect.cleandoc(head) + "\n\n" + inspect.cleandoc(rest)
    return inspect.cleandoc(doc)


def own_doc(obj: Any) -> str:
    """The object's own docstring, dedented; inherited ones are not repeated."""
    doc = getattr(obj, "__doc__", None)
    return stable(clean_doc(doc)) if isinstance(doc, str) else ""


def source_without_docstring(func: Any) -> str | None:
    """Dedented source of a function with its docstring lines removed (it is printed above)."""
    try:
        src = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return stable(src.rstrip())
    node = tree.body[0] if tree.body else None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and first.end_lineno is not None
        ):
            lines = src.splitlines()
            if len(node.body) == 1:  # keep the body valid: a docstring-only function
                lines[first.lineno - 1 : first.end_lineno] = [" " * first.col_offset + "..."]
            else:
                del lines[first.lineno - 1 : first.end_lineno]
            src = "\n".join(lines)
    return stable(src.rstrip())


def class_body_source(cls: type) -> str | None:
    """Class header plus its non-method statements (fields, constants); methods come later."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.ClassDef):
        return None
    lines = src.splitlines()
    kept: list[str] = []
    for i, stmt in enumerate(node.body):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        is_doc = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        if (i == 0 and is_doc) or isinstance(stmt, ast.Pass) or stmt.end_lineno is None:
            continue
        kept += lines[stmt.lineno - 1 : stmt.end_lineno]
    if not kept:
        return None
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    header = [ln for ln in lines[first - 1 : node.body[0].lineno - 1] if ln.strip()]
    return stable("\n".join(header + kept).rstrip())


# --- discovery -------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Everything found while walking a package, before rendering."""

    package: str
    modules: list[Any] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _is_public_module(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


@contextlib.contextmanager
def _guard_std_streams() -> Iterator[None]:
    """Undo an import that redirects fd 1/2 or sys.stdout/err (worker scripts do this)."""
    saved_fds = (os.dup(1), os.dup(2))
    saved_streams = (sys.stdout, sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved_streams
        for fd, saved in zip((1, 2), saved_fds, strict=True):
            os.dup2(saved, fd)
            os.close(saved)


def discover(package: str = "dspy", prefixes: Sequence[str] | None = None) -> Corpus:
    """Import each public submodule of ``package`` (sorted); record failures, never raise."""
    root = importlib.import_module(package)
    names = {package}
    walk_errors: list[str] = []
    for info in pkgutil.walk_packages(root.__path__, package + ".", onerror=walk_errors.append):
        names.add(info.name)
    corpus = Corpus(package=package)
    for name in sorted(names | set(walk_errors)):
        if not _is_public_module(name):
            continue
        if prefixes and not any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        if any(p.search(name) for p in SKIP_MODULE_PATTERNS):
            corpus.skipped.append((name, "not imported: runs as a subprocess script"))
            continue
        try:
            with _guard_std_streams():
                module = importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - any import failure just skips the module
            if isinstance(exc, KeyboardInterrupt):
                raise
            corpus.skipped.append((name, f"import failed: {type(exc).__name__}"))
            continue
        corpus.modules.append(module)
    return corpus


def _defined_here(module: Any) -> list[tuple[str, Any]]:
    items = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if getattr(value, "__module__", None) != module.__name__:
            continue
        items.append((name, value))
    return sorted(items, key=lambda item: item[0])


def _class_members(cls: type) -> list[tuple[str, str, Any]]:
    """(name, kind, function-or-property) for methods defined in the class body itself."""
    members = []
    for name, raw in vars(cls).items():
        if name.startswith("_") and name not in _KEEP_DUNDERS:
            continue
        if isinstance(raw, staticmethod):
            members.append((name, "staticmethod", raw.__func__))
        elif isinstance(raw, classmethod):
            members.append((name, "classmethod", raw.__func__))
        elif isinstance(raw, property):
            members.append((name, "property", raw))
        elif inspect.isfunction(raw):
            members.append((name, "method", raw))
    return sorted(members, key=lambda m: m[0])


# --- rendering -------------------------------------------------------------------------------


def _code_block(text: str) -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [f"{fence}python", text, fence, ""]


def _render_function(
    out: list[str], title: str, display: str, func: Any, include_source: bool, level: str
) -> None:
    keyword = "async def" if inspect.iscoroutinefunction(func) else "def"
    out += [f"{level} {title}", ""]
    sig = signature_text(func)
    if sig is not None:
        out += _code_block(f"{keyword} {display}{sig}")
    doc = own_doc(func)
    if doc:
        out += [doc, ""]
    if include_source:
        src = source_without_docstring(func)
        if src:
            out += ["Source:", "", *_code_block(src)]


def _render_class(out: list[str], cls: type, include_source: bool) -> None:
    bases = [b for b in cls.__bases__ if b is not object]
    base_text = f"({', '.join(b.__name__ for b in bases)})" if bases else ""
    out += [f"## class {cls.__name__}{base_text}", ""]
    sig = signature_text(cls)
    if sig is not None and sig != "(*args, **kwargs)":  # uninformative; __init__ follows
        out += _code_block(f"{cls.__name__}{sig}")
    doc = own_doc(cls)
    if doc:
        out += [doc, ""]
    if include_source:
        body = class_body_source(cls)
        if body:
            out += ["Class attributes:", "", *_code_block(body)]
    for name, kind, member in _class_members(cls):
        title = f"{cls.__name__}.{name}"
        if kind == "property":
            out += [f"### property {title}", ""]
            doc = own_doc(member)
            if doc:
                out += [doc, ""]
            if include_source and member.fget is not None:
                src = source_without_docstring(member.fget)
                if src:
                    out += ["Source:", "", *_code_block(src)]
            continue
        label = f"{kind} {title}" if kind != "method" else title
        _render_function(out, label, name, member, include_source, "###")


def render(corpus: Corpus, include_source: bool = True) -> str:
    """The corpus as Markdown-ish text: one ``# module`` section per module, then skips."""
    out = [
        header_line(corpus.package),
        "",
        f"Generated by scripts/build_dspy_corpus.py from the installed {corpus.package} package:",
        "module docstrings, then public classes and functions (sorted by name) with signatures,",
        "docstrings" + (" and source." if include_source else "."),
        "",
        "## Modules",
        "",
        *[f"- {m.__name__}" for m in corpus.modules],
        "",
    ]
    for module in corpus.modules:
        out += [f"# {module.__name__}", ""]
        doc = own_doc(module)
        if doc:
            out += [doc, ""]
        for name, value in _defined_here(module):
            if inspect.isclass(value):
                _render_class(out, value, include_source)
            else:
                _render_function(out, f"function {name}", name, value, include_source, "##")
    if corpus.skipped:
        out += [f"# Skipped {corpus.package} modules", ""]
        out += [f"- {name}: {reason}" for name, reason in corpus.skipped]
        out.append("")
    text = "\n".join(out)
    text = re.sub(r"[ \t]+\n", "\n", text)  # trailing spaces vary with editors; drop them
    return text.rstrip("\n") + "\n"


def build(
    output: Path | None = None,
    package: str = "dspy",
    prefixes: Sequence[str] | None = None,
    include_source: bool = True,
) -> str:
    """Build the corpus text; write it (UTF-8, LF) to ``output`` if given; return it."""
    text = render(discover(package, prefixes), include_source=include_source)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(text.encode("utf-8"))
    return text


def main(argv: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--package", default="dspy")
    parser.add_argument(
        "--module", action="append", dest="prefixes", help="only modules under this prefix"
    )
    parser.add_argument("--no-source", action="store_true", help="docstrings and signatures only")
    args = parser.parse_args(argv)
    text = build(args.output, args.package, args.prefixes, include_source=not args.no_source)
    size = len(text.encode("utf-8"))
    echo(f"wrote {args.output} ({size:,} bytes, {text.count(chr(10)):,} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
