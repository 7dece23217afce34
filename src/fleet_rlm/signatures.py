"""DSPy signatures for the RLM tasks. Their docstrings become the planner's task instructions.

The guidance is general, not tuned to any benchmark: small models do well when told to
search the context with code and print only short matches, never the whole context.
"""

from __future__ import annotations

import dspy

EXPLORE = (
    "The input text is long: never print all of it. Search it with code (str.find, "
    "re.finditer, splitting on headers) and print only short matches or slices (at most "
    "2,000 characters). Call llm_query on relevant slices when you need their meaning. "
)


class BasicQuestion(dspy.Signature):
    """Answer the question. Compute exact results with Python in the REPL."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the answer, concise and exact")


class AskDocuments(dspy.Signature):
    __doc__ = (
        "Answer the question from the documents. "
        + EXPLORE
        + "When several files are given, each starts with a line `=== FILE: <path> ===`. "
        "Cite where the answer came from as `path:line` (compute the line with "
        "documents.count('\\n', file_start, pos) + 1) or as a short exact quote."
    )

    documents: str = dspy.InputField(desc="the documents' full text")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the answer, grounded in the documents")
    citations: list[str] = dspy.OutputField(desc="path:line references or short exact quotes")


class ExtractArchitecture(dspy.Signature):
    __doc__ = (
        "Extract the architecture described in the documentation: its modules, its "
        "optimizers and its design principles, guided by the query. "
        + EXPLORE
        + "Find headers first, then read the relevant sections with llm_query."
    )

    docs: str = dspy.InputField(desc="documentation text")
    query: str = dspy.InputField(desc="what to extract")
    modules: list[str] = dspy.OutputField(desc="module names")
    optimizers: list[str] = dspy.OutputField(desc="optimizer names")
    design_principles: str = dspy.OutputField(desc="the design principles, in a few sentences")


class ExtractAPIEndpoints(dspy.Signature):
    __doc__ = (
        "List the API endpoints (public functions, classes, methods or HTTP routes) the "
        "documentation describes. "
        + EXPLORE
        + "Split the text into chunks and query them in parallel with llm_query_batched, then "
        "merge and de-duplicate the results in code."
    )

    docs: str = dspy.InputField(desc="documentation text")
    api_endpoints: list[str] = dspy.OutputField(desc="one endpoint per item, with its signature")


class FindErrorPatterns(dspy.Signature):
    __doc__ = (
        "Find the errors, exceptions and failure modes the documentation mentions and group "
        "them into categories. "
        + EXPLORE
        + "Search for words like error, exception, raise, fail, warning; keep matches in a "
        "variable; categorise them with llm_query; count in code."
    )

    docs: str = dspy.InputField(desc="documentation text")
    error_categories: dict[str, list[str]] = dspy.OutputField(
        desc="category name -> the errors in it"
    )
    total_errors_found: int = dspy.OutputField(desc="how many distinct errors were found")


class SummarizeSample(dspy.Signature):
    __doc__ = "Summarize the text: what it is about and how it is organised. " + EXPLORE

    sample: str = dspy.InputField(desc="a sample of a document")
    summary: str = dspy.OutputField(desc="a summary of a few sentences")


class AnalyzeStructure(dspy.Signature):
    __doc__ = (
        "Describe the document's structure using the regex_extract tool: its Markdown headers "
        "and fenced code blocks. " + EXPLORE
    )

    docs: str = dspy.InputField(desc="document text")
    headers: list[str] = dspy.OutputField(desc="the headers, in order")
    code_blocks: list[str] = dspy.OutputField(desc="the first line of each fenced code block")
    structure_summary: str = dspy.OutputField(desc="how the document is organised")
