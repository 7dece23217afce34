"""Tests for fleet_rlm.tools: regex_extract, the @tool registry and load_tools."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest

from fleet_rlm import tools as tools_mod
from fleet_rlm.tools import (
    ToolLoadError,
    builtin_tools,
    load_tools,
    regex_extract,
    registered_tools,
    tool,
    unregister_tool,
)


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    saved = dict(tools_mod._REGISTRY)
    tools_mod.clear_registry()
    yield
    tools_mod.clear_registry()
    tools_mod._REGISTRY.update(saved)


# --- regex_extract ---------------------------------------------------------------------------


def test_regex_extract_basic_matches() -> None:
    assert regex_extract(r"cat", "cat dog cat bird") == ["cat", "cat"]
    assert regex_extract(r"zebra", "cat dog") == []


def test_regex_extract_without_groups_returns_full_matches_even_with_groups_in_pattern() -> None:
    assert regex_extract(r"([xy])=(\d+)", "x=12 y=99") == ["x=12", "y=99"]


def test_regex_extract_groups_positional() -> None:
    result = regex_extract(r"([xy])=(\d+)", "x=12 y=99", groups=True)
    assert result == [["x", "12"], ["y", "99"]]
    assert json.loads(json.dumps(result)) == result


def test_regex_extract_groups_named_and_optional() -> None:
    text = "a=1 b= c=3"
    result = regex_extract(r"(?P<key>\w)=(?P<value>\d+)?", text, groups=True)
    assert result == [
        {"key": "a", "value": "1"},
        {"key": "b", "value": None},
        {"key": "c", "value": "3"},
    ]


def test_regex_extract_groups_mixed_named_and_unnamed_gives_lists() -> None:
    assert regex_extract(r"(?P<k>\w)=(\d)", "a=1", groups=True) == [["a", "1"]]


def test_regex_extract_groups_single_or_no_group_gives_strings_like_findall() -> None:
    text = "# Guide\n## Modules\n"
    assert regex_extract(r"^#+ (.+)$", text, flags="m", groups=True) == ["Guide", "Modules"]
    assert regex_extract(r"^#+ (x)?", text, flags="m", groups=True) == [None, None]
    assert regex_extract(r"\d+", "1 22", groups=True) == ["1", "22"]
    assert regex_extract(r"(?P<n>\d+)", "1 22", groups=True) == [{"n": "1"}, {"n": "22"}]


@pytest.mark.parametrize(
    "flags", ["i", "I", "IGNORECASE", "ignorecase", "re.IGNORECASE", int(re.IGNORECASE)]
)
def test_regex_extract_ignorecase_spellings(flags: str) -> None:
    assert len(regex_extract(r"error", "Error\nerror\nERROR", flags=flags)) == 3


def test_regex_extract_flags_combined() -> None:
    text = "Title: One\nbody\ntitle: two"
    assert regex_extract(r"^title: \w+$", text) == []
    assert regex_extract(r"^title: \w+$", text, flags="im") == ["Title: One", "title: two"]
    assert regex_extract(r"^title: \w+$", text, flags="IGNORECASE|MULTILINE") == [
        "Title: One",
        "title: two",
    ]
    assert regex_extract(r"^title: \w+$", text, flags="MULTILINE, IGNORECASE") == [
        "Title: One",
        "title: two",
    ]
    assert regex_extract(r"One.body", text) == []
    assert regex_extract(r"One.body", text, flags="s") == ["One\nbody"]


def test_regex_extract_no_flags_is_case_sensitive() -> None:
    assert regex_extract(r"error", "Error error") == ["error"]


@pytest.mark.parametrize("flags", ["q", "iq", "CASELESS", "I|BOGUS", "L"])
def test_regex_extract_bad_flag(flags: str) -> None:
    with pytest.raises(ValueError, match="unknown regex flag"):
        regex_extract(r"a", "a", flags=flags)


def test_regex_extract_bad_pattern() -> None:
    with pytest.raises(ValueError, match=r"invalid regex pattern '\(unclosed'"):
        regex_extract(r"(unclosed", "text")


def test_regex_extract_wrong_types() -> None:
    with pytest.raises(ValueError, match="text must be a string"):
        regex_extract(r"a", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flags must be a string"):
        regex_extract(r"a", "a", flags=["i"])  # type: ignore[arg-type]


def test_regex_extract_as_dspy_tool() -> None:
    t = dspy.Tool(regex_extract)
    assert t.name == "regex_extract"
    assert "Example:" in (t.desc or "")
    assert not (t.desc or "").startswith(" ")
    assert list(t.args) == ["pattern", "text", "flags", "groups"]
    assert t.args["groups"] == {"type": "boolean", "default": False}
    assert t(pattern=r"\d+", text="a1 b22") == ["1", "22"]
    assert builtin_tools() == [regex_extract]


# --- @tool registry --------------------------------------------------------------------------


def test_tool_decorator_bare_registers_and_returns_function() -> None:
    @tool
    def word_count(text: str) -> int:
        """Count whitespace-separated words. Returns an int."""
        return len(text.split())

    assert word_count("a b c") == 3
    assert registered_tools() == [word_count]
    t = dspy.Tool(word_count)
    assert t.name == "word_count"
    assert t.desc == "Count whitespace-separated words. Returns an int."
    assert t.args == {"text": {"type": "string"}}
    assert t(text="x y") == 2


def test_tool_decorator_with_name_and_description() -> None:
    @tool(name="lookup_price", description="Price of a product in cents. Returns int.")
    def _impl(sku: str, qty: int = 1) -> int:
        return 100 * qty

    t = dspy.Tool(_impl)
    assert t.name == "lookup_price"
    assert t.desc == "Price of a product in cents. Returns int."
    assert t.args == {"sku": {"type": "string"}, "qty": {"type": "integer", "default": 1}}
    assert t(sku="a", qty=3) == 300
    assert [f.__name__ for f in registered_tools()] == ["lookup_price"]


def test_tool_docstring_is_dedented_for_the_model() -> None:
    @tool
    def f(x: str) -> str:
        """First line.

        Second line, indented in source.
        """
        return x

    assert f.__doc__ == "First line.\n\nSecond line, indented in source."


def test_registered_tools_work_in_dspy_rlm() -> None:
    @tool
    def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    rlm = dspy.RLM("context, query -> answer", tools=registered_tools())
    assert list(rlm.tools) == ["shout"]
    assert "`shout(text: string)` - Upper-case text." in rlm._format_tool_docs(rlm.tools)


def test_tool_registration_order_and_unregister() -> None:
    @tool
    def b_tool() -> int:
        return 1

    @tool
    def a_tool() -> int:
        return 2

    assert [f.__name__ for f in registered_tools()] == ["b_tool", "a_tool"]
    unregister_tool("b_tool")
    assert registered_tools() == [a_tool]


@pytest.mark.parametrize("bad", ["llm_query", "SUBMIT", "not valid", "class", "1abc"])
def test_tool_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError, match="tool name"):

        @tool(name=bad)
        def f() -> None:
            pass


def test_tool_rejects_duplicate_name_from_different_function() -> None:
    @tool(name="dup")
    def one() -> int:
        return 1

    with pytest.raises(ValueError, match="already registered"):

        @tool(name="dup")
        def two() -> int:
            return 2


# --- load_tools ------------------------------------------------------------------------------

TOOL_FILE = textwrap.dedent(
    '''
    from fleet_rlm.tools import tool

    @tool
    def reverse(text: str) -> str:
        """Reverse a string."""
        return text[::-1]

    @tool(name="char_count")
    def _count(text: str) -> int:
        """Number of characters."""
        return len(text)

    def plain_helper(x: int) -> int:
        """Not decorated."""
        return x + 1

    NOT_CALLABLE = 3
    '''
)


@pytest.fixture
def tool_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_tools.py"
    path.write_text(TOOL_FILE)
    return path


def test_load_tools_file_whole_module(tool_file: Path) -> None:
    loaded = load_tools(str(tool_file))
    assert [f.__name__ for f in loaded] == ["reverse", "char_count"]
    assert loaded[0]("abc") == "cba"
    # Loading the same file again replaces the registrations instead of clashing.
    again = load_tools(str(tool_file))
    assert [f.__name__ for f in again] == ["reverse", "char_count"]
    assert [f.__name__ for f in registered_tools()] == ["reverse", "char_count"]


def test_load_tools_file_single_function(tool_file: Path) -> None:
    (helper,) = load_tools(f"{tool_file}:plain_helper")
    assert helper(1) == 2
    assert dspy.Tool(helper).name == "plain_helper"


def test_load_tools_module_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "acme_tools_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "text.py").write_text(TOOL_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert [f.__name__ for f in load_tools("acme_tools_pkg.text")] == [
            "reverse",
            "char_count",
        ]
        (rev,) = load_tools("acme_tools_pkg.text:reverse")
        assert rev("ab") == "ba"
        # Builtin functions from installed modules work too.
        (regex,) = load_tools("fleet_rlm.tools:regex_extract")
        assert regex is regex_extract
    finally:
        for name in [n for n in sys.modules if n.startswith("acme_tools_pkg")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "needs 'package.module:function'"),
        ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
        ("no_such_module_xyz", "no module named 'no_such_module_xyz'"),
        ("fleet_rlm.tools:no_such_fn", "has no attribute 'no_such_fn'.*regex_extract"),
        ("fleet_rlm.tools:RESERVED_TOOL_NAMES", "not a function"),
        ("json", "defines no @tool functions"),
        ("not a module!", "neither a module name nor a .py path"),
        ("./does/not/exist.py:f", "file not found"),
    ],
)
def test_load_tools_errors(spec: str, message: str) -> None:
    with pytest.raises(ToolLoadError, match=message):
        load_tools(spec)


def test_load_tools_file_errors(tmp_path: Path, tool_file: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(ToolLoadError, match="importing .*broken.py failed: RuntimeError: boom"):
        load_tools(f"{broken}:f")
    with pytest.raises(ToolLoadError, match="has no attribute 'nope'"):
        load_tools(f"{tool_file}:nope")
    with pytest.raises(ToolLoadError, match="not a function"):
        load_tools(f"{tool_file}:NOT_CALLABLE")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ToolLoadError, match="defines no @tool functions"):
        load_tools(str(empty))
    notpy = tmp_path / "tools.txt"
    notpy.write_text("")
    with pytest.raises(ToolLoadError, match="not a .py file"):
        load_tools(f"{notpy}:f")


def test_tool_load_error_is_value_error() -> None:
    assert issubclass(ToolLoadError, ValueError)


def test_load_tools_finds_modules_in_cwd_and_file_siblings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console script has no cwd on sys.path; --tool mytools:fn must still work."""
    (tmp_path / "cwd_tools_mod.py").write_text(TOOL_FILE)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "helper_mod_xyz.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    (sub / "uses_sibling.py").write_text(
        "from helper_mod_xyz import double\nfrom fleet_rlm.tools import tool\n\n"
        "@tool\ndef quadruple(x: int) -> int:\n    return double(double(x))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        (rev,) = load_tools("cwd_tools_mod:reverse")
        assert rev("ab") == "ba"
        (quad,) = load_tools(str(sub / "uses_sibling.py"))
        assert quad(3) == 12
        assert str(tmp_path) not in sys.path and str(sub) not in sys.path
    finally:
        for name in ("cwd_tools_mod", "helper_mod_xyz"):
            sys.modules.pop(name, None)
