"""Planner instructions. `compact` is a short rewrite of dspy.RLM's action instructions.

Why: on a small CPU model every prompt token and every generated token is the user's wait,
and small models follow a few direct rules better than many. The compact text keeps what
the loop needs (variables, llm_query, llm_query_batched, SUBMIT with the output fields) and the
one rule that made a 1.5B model succeed: search the context with code, never print it whole.
dspy.RLM's loop, parsing and SUBMIT handling are unchanged; only the instruction text differs.
"""

from __future__ import annotations

from typing import Any

from dspy.adapters.utils import translate_field_type

STYLES = ("dspy", "compact")

COMPACT = """{task}Inputs {inputs} are Python variables in a REPL. Produce:
{outputs}

Each step you write one short Python code block; you then see what it printed.
Rules:
- The inputs can be very long: NEVER print them whole. Search with code, for example
  `re.findall(r"keyword[^\\n]*", context)` or `context.find("word")`, and print only short
  matches or slices (under 2,000 characters).
- `llm_query(prompt)` asks a helper model about a text you pass it (keep it under 20,000
  characters); `llm_query_batched([p1, p2, ...])` asks many at once. Use them for meaning,
  code for finding and counting.
- Variables persist between steps. Compute exact values in code; do not retype them.
- When a printed result shows the answer, call `SUBMIT({names})` with the values.
Keep `reasoning` to one or two sentences.{tools}"""


def compact_instructions(signature: Any, tools: dict[str, Any] | None = None) -> str:
    """The compact action instructions for a dspy signature (and the user tools' docs)."""
    inputs = ", ".join(f"`{n}`" for n in signature.input_fields)
    outputs = "\n".join(
        f"- {translate_field_type(n, f)}" for n, f in signature.output_fields.items()
    )
    names = ", ".join(signature.output_fields)
    task = f"{signature.instructions.strip()}\n\n" if signature.instructions else ""
    tool_lines = ""
    if tools:
        docs = [f"- `{name}(...)`: {(t.desc or '').strip()}" for name, t in tools.items()]
        tool_lines = "\nTools you can call:\n" + "\n".join(docs)
    return COMPACT.format(task=task, inputs=inputs, outputs=outputs, names=names, tools=tool_lines)
