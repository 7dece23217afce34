"""Host-side tools that sandboxed RLM code can call, and the way users add their own.

A tool is a plain Python function that runs on the host. Code in the sandbox calls it by
name; its arguments and return value cross the sandbox boundary as JSON, so a tool should take
and return JSON-compatible values (str, int, float, bool, None, lists, dicts with str keys).
``dspy.RLM`` wraps each tool with ``dspy.Tool(func)``, which reads the function's ``__name__``,
docstring and type hints: the docstring is what the planner model sees, so write it for a model.

Three ways to hand tools to a run:

* ``@tool`` on a function registers it in a module-level registry (``registered_tools()``);
* ``load_tools("package.module:function")`` or ``load_tools("path/to/file.py:function")``
  imports one function, and ``load_tools("package.module")`` / ``load_tools("file.py")`` imports
  every ``@tool`` in that module (this backs the CLI ``--tool`` option);
* any callable passed directly in ``tools=[...]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import keyword
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

__all__ = [
    "RESERVED_TOOL_NAMES",
    "ToolLoadError",
    "builtin_tools",
    "clear_registry",
    "load_tools",
    "regex_extract",
    "registered_tools",
    "tool",
    "unregister_tool",
]

F = TypeVar("F", bound=Callable[..., Any])

# Names the sandbox already defines; a user tool with one of these would shadow it.
RESERVED_TOOL_NAMES = frozenset({"llm_query", "llm_query_batched", "SUBMIT", "print"})

_TOOL_MARKER = "__fleet_rlm_tool__"

# ---------------------------------------------------------------------------------------------
# regex_extract
# ---------------------------------------------------------------------------------------------

_FLAG_LETTERS: dict[str, re.RegexFlag] = {
    "a": re.ASCII,
    "i": re.IGNORECASE,
    "m": re.MULTILINE,
    "s": re.DOTALL,
    "x": re.VERBOSE,
}
_FLAG_NAMES: dict[str, re.RegexFlag] = {
    "ASCII": re.ASCII,
    "A": re.ASCII,
    "IGNORECASE": re.IGNORECASE,
    "I": re.IGNORECASE,
    "MULTILINE": re.MULTILINE,
    "M": re.MULTILINE,
    "DOTALL": re.DOTALL,
    "S": re.DOTALL,
    "VERBOSE": re.VERBOSE,
    "X": re.VERBOSE,
}
_FLAG_HELP = (
    "use letters like 'im' (a=ASCII, i=IGNORECASE, m=MULTILINE, s=DOTALL, x=VERBOSE) "
    "or names like 'IGNORECASE|MULTILINE'"
)


def _parse_flags(flags: str | int) -> re.RegexFlag:
    """Turn 'im', 'IGNORECASE|MULTILINE', 're.I | re.M' or an int into a RegexFlag."""
    if isinstance(flags, bool) or not isinstance(flags, (str, int)):
        raise ValueError(f"flags must be a string, got {type(flags).__name__}; {_FLAG_HELP}")
    if isinstance(flags, int):
        allowed = 0
        for flag in _FLAG_NAMES.values():
            allowed |= flag
        if flags & ~allowed:
            raise ValueError(f"unsupported regex flag value {flags}; {_FLAG_HELP}")
        return re.RegexFlag(flags)
    result = re.RegexFlag(0)
    for part in re.split(r"[|,+\s]+", flags.strip()):
        if not part:
            continue
        name = part.removeprefix("re.")
        if name.upper() in _FLAG_NAMES and (len(name) > 1 or name.isupper()):
            result |= _FLAG_NAMES[name.upper()]
        elif name.isalpha() and all(ch in _FLAG_LETTERS for ch in name.lower()):
            for ch in name.lower():
                result |= _FLAG_LETTERS[ch]
        else:
            raise ValueError(f"unknown regex flag {part!r}; {_FLAG_HELP}")
    return result


def regex_extract(pattern: str, text: str, flags: str = "", groups: bool = False) -> list:
    """Find all matches of a Python regex in text. Returns a list.

    groups=False: list of matched strings. groups=True (like re.findall): per match, the one
    group's string, a list of group values if there are several (None if a group did not
    match), or a dict {name: value} if all groups are named (?P<name>...).
    flags: letters i=ignorecase m=multiline s=dotall x=verbose a=ascii (e.g. "im") or
    names ("IGNORECASE|MULTILINE"). Bad pattern or flag raises ValueError.
    Example: regex_extract(r"(\\w+)=(\\d+)", "a=1 b=22", groups=True) -> [["a", "1"], ["b", "22"]]
    """
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string, got {type(pattern).__name__}")
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    compiled_flags = _parse_flags(flags)
    try:
        compiled = re.compile(pattern, compiled_flags)
    except re.error as exc:
        raise ValueError(f"invalid regex pattern {pattern!r}: {exc}") from None

    if not groups:
        return [m.group(0) for m in compiled.finditer(text)]
    if compiled.groupindex and len(compiled.groupindex) == compiled.groups:
        return [m.groupdict() for m in compiled.finditer(text)]
    if compiled.groups <= 1:
        return [m.group(compiled.groups) for m in compiled.finditer(text)]
    return [list(m.groups()) for m in compiled.finditer(text)]


# The docstring is the tool description the planner reads; indentation would only cost tokens.
regex_extract.__doc__ = inspect.cleandoc(regex_extract.__doc__ or "")


def builtin_tools() -> list[Callable[..., Any]]:
    """Tools fleet-rlm ships; not in the user registry so they are opted into explicitly."""
    return [regex_extract]


# ---------------------------------------------------------------------------------------------
# @tool registry
# ---------------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., Any]] = {}


class ToolLoadError(ValueError):
    """A --tool spec could not be resolved to callables (bad path, import error, missing name)."""


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"tool name {name!r} must be a valid Python identifier (not a keyword)")
    if name in RESERVED_TOOL_NAMES:
        raise ValueError(f"tool name {name!r} is reserved by the sandbox; choose another name")


def _origin(func: Callable[..., Any]) -> tuple[str, str]:
    return (getattr(func, "__module__", "") or "", getattr(func, "__qualname__", "") or "")


def _register(func: F, name: str | None, description: str | None) -> F:
    if not callable(func):
        raise TypeError(f"@tool needs a function, got {type(func).__name__}")
    tool_name = name if name is not None else getattr(func, "__name__", None)
    if tool_name is None:
        raise ValueError("@tool on an object without __name__ needs name=...")
    _check_name(tool_name)
    existing = _REGISTRY.get(tool_name)
    # Re-importing the same module (e.g. load_tools on a file twice) re-registers the same
    # definition under the same name: replace it. Two different functions sharing a name is a bug.
    if existing is not None and existing is not func and _origin(existing) != _origin(func):
        raise ValueError(
            f"a tool named {tool_name!r} is already registered "
            f"({'.'.join(_origin(existing))}); pass @tool(name=...) to rename one"
        )
    # dspy.Tool reads __name__ and __doc__, so the overrides live on the function itself.
    if name is not None:
        func.__name__ = name
    if description is not None:
        func.__doc__ = description
    if func.__doc__:
        # dspy puts the docstring into the prompt verbatim; indentation only costs tokens.
        func.__doc__ = inspect.cleandoc(func.__doc__)
    setattr(func, _TOOL_MARKER, True)
    _REGISTRY[tool_name] = func
    return func


@overload
def tool(func: F, /) -> F: ...
@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(
    func: F | None = None, /, *, name: str | None = None, description: str | None = None
) -> F | Callable[[F], F]:
    """Register a host function as an RLM tool: ``@tool`` or ``@tool(name=..., description=...)``.

    The function is returned as is (still callable normally). ``name`` replaces its
    ``__name__`` and ``description`` its docstring, because that is what ``dspy.Tool`` and so
    the planner model see. Names must be identifiers and not shadow sandbox built-ins.
    """
    if func is not None:
        return _register(func, None, None)

    def decorate(f: F) -> F:
        return _register(f, name, description)

    return decorate


def registered_tools() -> list[Callable[..., Any]]:
    """All ``@tool`` functions registered so far, in registration order."""
    return list(_REGISTRY.values())


def unregister_tool(name: str) -> None:
    """Remove one tool from the registry (KeyError if it is not there)."""
    del _REGISTRY[name]


def clear_registry() -> None:
    """Empty the registry; for tests and long-lived processes that reload tool modules."""
    _REGISTRY.clear()


# ---------------------------------------------------------------------------------------------
# load_tools
# ---------------------------------------------------------------------------------------------


def _split_spec(spec: str) -> tuple[str, str | None]:
    """Split 'target:attr'; a colon followed by a non-identifier (C:\\x.py) is not a separator."""
    target, sep, attr = spec.rpartition(":")
    if sep and attr.isidentifier() and target:
        return target, attr
    return spec, None


@contextlib.contextmanager
def _on_sys_path(directory: str) -> Iterator[None]:
    """Make ``directory`` importable while a tool module loads (siblings, cwd modules).

    The ``fleet-rlm`` console script does not put the working directory on sys.path the way
    ``python -m`` does, so ``--tool mytools:fn`` would otherwise miss ./mytools.py.
    """
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)


def _looks_like_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _import_file(path_text: str, spec: str) -> Any:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ToolLoadError(f"--tool {spec!r}: file not found: {path}")
    if path.suffix != ".py":
        raise ToolLoadError(f"--tool {spec!r}: {path} is not a .py file")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", resolved.stem)
    module_name = f"fleet_rlm_user_tools.{stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ToolLoadError(f"--tool {spec!r}: cannot load {resolved} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before exec so dataclasses, pickling and relative lookups inside it work.
    sys.modules[module_name] = module
    try:
        with _on_sys_path(str(resolved.parent)):
            module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ToolLoadError(
            f"--tool {spec!r}: importing {resolved} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(name: str, spec: str) -> Any:
    try:
        importlib.invalidate_caches()  # a tool file written moments ago must be found
        with _on_sys_path(os.getcwd()):
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ToolLoadError(
                f"--tool {spec!r}: no module named {name!r} "
                "(use 'package.module:function' or 'path/to/file.py:function')"
            ) from exc
        raise ToolLoadError(f"--tool {spec!r}: importing {name} failed: {exc}") from exc
    except Exception as exc:
        raise ToolLoadError(
            f"--tool {spec!r}: importing {name} failed: {type(exc).__name__}: {exc}"
        ) from exc


def load_tools(spec: str) -> list[Callable[..., Any]]:
    """Import tools named by a CLI ``--tool`` spec and return them as a list of callables.

    ``pkg.mod:func`` / ``path/to/file.py:func`` gives that one function (decorated or not);
    ``pkg.mod`` / ``path/to/file.py`` gives every ``@tool`` function found in the module.
    Raises ToolLoadError (a ValueError) with a message fit for a command line.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ToolLoadError("--tool needs 'package.module:function' or 'path/to/file.py:function'")
    spec = spec.strip()
    target, attr = _split_spec(spec)
    if _looks_like_path(target):
        module = _import_file(target, spec)
    else:
        if not all(part.isidentifier() for part in target.split(".")):
            raise ToolLoadError(
                f"--tool {spec!r}: {target!r} is neither a module name nor a .py path "
                "(use 'package.module:function' or 'path/to/file.py:function')"
            )
        module = _import_module(target, spec)

    module_label = getattr(module, "__file__", None) if _looks_like_path(target) else target
    if attr is not None:
        try:
            func = getattr(module, attr)
        except AttributeError:
            public = sorted(
                n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            )
            hint = f"; callables there: {', '.join(public)}" if public else ""
            raise ToolLoadError(
                f"--tool {spec!r}: {module_label} has no attribute {attr!r}{hint}"
            ) from None
        if not callable(func):
            raise ToolLoadError(
                f"--tool {spec!r}: {attr!r} is a {type(func).__name__}, not a function"
            )
        return [func]

    found: list[Callable[..., Any]] = []
    for value in vars(module).values():
        if callable(value) and getattr(value, _TOOL_MARKER, False) and value not in found:
            found.append(value)
    if not found:
        raise ToolLoadError(
            f"--tool {spec!r}: {module_label} defines no @tool functions; "
            f"decorate them with fleet_rlm.tools.tool or name one as '{spec}:function'"
        )
    return found
