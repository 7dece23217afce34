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
from dspy.primitives.sandbox_serializable import SandboxSerializable

STYLES = ("dspy", "compact")

COMPACT = """{task}You work in a Python REPL where the variables {inputs} already hold the inputs
(`re` is imported; `variables_info` is only a description for you, not a variable).
Produce:
{outputs}

Each step, write one short Python code block; you then see what it printed.
Rules:
- The inputs are long and the preview shows only their start: what you need is usually not in
  it. Always search the variables with code before answering. Never print them whole, never
  assign to them, and never copy text from the preview into your code.
- Find things with code, e.g. `re.findall(r"[^\n]*word[^\n]*", context)` for a word taken from
  the question, or `context.find("word")`, and print only the short matches.
- `llm_query(prompt)` asks a helper model about a piece of text you pass it (under 20,000
  characters); `llm_query_batched([p1, p2, ...])` asks many at once. Use them for meaning;
  use code for finding and counting.
- Search for ONE distinctive word or name from the question. If a search finds nothing, search
  again with another single word; never answer "not found" before trying that.
- Variables you create persist between steps. If a step fails, change the code.
- When the printed output shows the answer, call `SUBMIT({names})`. A short answer you can
  see (a number, a name) may be written directly, e.g. `SUBMIT({first}="8443")`; long values
  should come from variables.
Keep `reasoning` to one or two sentences and the code under 10 lines.{tools}"""


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
    first = next(iter(signature.output_fields))
    return COMPACT.format(
        task=task, inputs=inputs, outputs=outputs, names=names, first=first, tools=tool_lines
    )


_DEMO_VARIABLES = """[1] «««
    Variable: `{name}` (access it in your code)
    Type: str
    Total length: 2,406,117 characters
    Preview:
    ```
    2024-03-01 10:00:01 INFO starting worker pool size=8
    2024-03-01 10:00:02 INFO cache warmed in 1.2s
    ...
    2024-03-02 23:59:58 INFO shutting down
    ```
»»»
[2] «««
    Variable: `{question}` (access it in your code)
    Type: str
    Total length: 50 characters
    Preview:
    ```
    Which port does the payments service listen on?
    ```
»»»"""


def compact_demos(signature: Any) -> list:
    """Two worked steps on an unrelated log-search task: grep with a word from the question,
    then SUBMIT from the variables. Small models copy this shape instead of pasting previews.

    Only for signatures with one long text input and one question-like input; the SUBMIT
    call fills every output field with a value of its type.
    """
    import dspy
    from dspy.primitives.repl_types import REPLHistory

    inputs = list(signature.input_fields)
    if len(inputs) != 2:
        return []
    text, question = inputs
    variables = _DEMO_VARIABLES.format(name=text, question=question)
    first_code = (
        f'hits = re.findall(r"[^\\n]*payments[^\\n]*", {text})\nprint(len(hits))\nprint(hits[:5])'
    )
    first = dspy.Example(
        variables_info=variables,
        repl_history=REPLHistory(),
        iteration="1/8",
        reasoning=f"The preview does not show `{text}`; search all of it for lines with the most "
        "distinctive word of the question.",
        code=f"```python\n{first_code}\n```",
    ).with_inputs("variables_info", "repl_history", "iteration")
    output = (
        "2\n['2024-03-01 10:00:05 INFO payments listening on port 8443', "
        "'2024-03-02 08:12:44 WARN payments port 8443 slow handshake']"
    )
    history = REPLHistory().append(reasoning=first.reasoning, code=first_code, output=output)
    second = dspy.Example(
        variables_info=variables,
        repl_history=history,
        iteration="2/8",
        reasoning="The output shows the port: 8443.",
        code=f"```python\nSUBMIT({_demo_values(signature)})\n```",
    ).with_inputs("variables_info", "repl_history", "iteration")
    return [first, second]


def _demo_values(signature: Any) -> str:
    """Keyword arguments for the demo's SUBMIT: the port, shaped for each output's type."""
    parts = []
    for name, field in signature.output_fields.items():
        kind = getattr(field.annotation, "__origin__", field.annotation)
        value = {
            int: "8443",
            float: "8443.0",
            bool: "True",
            list: "hits[:1]",
            dict: '{"port": "8443"}',
        }.get(kind, '"8443"')
        parts.append(f"{name}={value}")
    return ", ".join(parts)


class LongText(SandboxSerializable):
    """A long str input shown to the planner by its size only, not by a preview of its start.

    Why: a small model reads dspy's 1,000-character preview as if it were the whole input and
    answers "not found" without searching. Inside the sandbox the value is the plain str.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:  # what dspy's preview helper sees; never the whole text
        return self.rlm_preview()

    def sandbox_setup(self) -> str:
        return ""

    def to_sandbox(self) -> str:  # type: ignore[override]  # dspy accepts str as is: no copy
        return self.text

    def sandbox_assignment(self, var_name: str, data_expr: str) -> str:
        return f"{var_name} = {data_expr}\ndel {data_expr}"

    def rlm_preview(self, max_chars: int = 500) -> str:
        return (
            f"(a str of {len(self.text):,} characters, too long to show: search it with code "
            "and print only short matches)"
        )


def present_long_inputs(inputs: dict[str, Any], threshold: int = 2_000) -> dict[str, Any]:
    """Wrap long str inputs as LongText (compact style); other inputs pass unchanged."""
    return {
        k: LongText(v) if isinstance(v, str) and len(v) > threshold else v
        for k, v in inputs.items()
    }
