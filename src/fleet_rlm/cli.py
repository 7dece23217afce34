"""The `fleet-rlm` command line: demos, document analysis, trajectories and checks.

User mistakes end in one or two plain lines on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleet_rlm import __version__

app = typer.Typer(
    name="fleet-rlm",
    help="Recursive Language Models on DSPy: long contexts live in a sandboxed Python REPL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)

# ---------------------------------------------------------------------------------------------
# Shared options
# ---------------------------------------------------------------------------------------------

LmOpt = Annotated[
    str | None,
    typer.Option(
        "--lm",
        help="LiteLLM model (e.g. openai/gpt-4o-mini) or 'local' for the "
        "offline model. Default: DSPY_LM_MODEL.",
    ),
]
SandboxOpt = Annotated[
    str | None,
    typer.Option(
        "--sandbox", help="Where code runs: local (default) or modal. Default: FLEET_RLM_SANDBOX."
    ),
]
MaxIterOpt = Annotated[int, typer.Option("--max-iterations", min=1, help="REPL steps at most.")]
MaxCallsOpt = Annotated[int, typer.Option("--max-llm-calls", min=1, help="Sub-LM calls at most.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds one code step may run.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show every step as it runs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
FullOpt = Annotated[bool, typer.Option("--full-output", help="Do not shorten long values.")]
TrajOpt = Annotated[
    Path | None,
    typer.Option("--trajectory-out", help="Save the full trajectory as JSON Lines here."),
]
EnvOpt = Annotated[Path | None, typer.Option("--env-file", help="Read settings from this file.")]
ToolOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--tool", help="Extra host tool, 'module:function' or 'file.py:function'. Repeatable."
    ),
]
PromptOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        help="Planner instructions: dspy (dspy.RLM's own) or compact "
        "(short, for small models). Default: compact for --lm local, else dspy.",
    ),
]
DocsOpt = Annotated[
    list[Path],
    typer.Option("--docs-path", help="Document file or folder. Repeatable.", show_default=False),
]
CharsOpt = Annotated[
    int | None, typer.Option("--chars", min=1, help="Use only the first N characters.")
]


@dataclass
class Common:
    """The options every run command takes."""

    lm: str | None = None
    sandbox: str | None = None
    max_iterations: int = 20
    max_llm_calls: int = 50
    timeout: float = 120.0
    verbose: bool = False
    as_json: bool = False
    full_output: bool = False
    trajectory_out: Path | None = None
    env_file: Path | None = None
    tool: list[str] = field(default_factory=list)
    prompt: str | None = None

    @classmethod
    def of(cls, params: dict[str, Any]) -> Common:
        """From a command's parameters (its `locals()`), ignoring the command's own ones."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names and v is not None})


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {escape(message)}")
    return typer.Exit(code)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn every error a user can cause or fix into a clear line and exit code 1."""
    from fleet_rlm.config import ConfigError
    from fleet_rlm.documents import DocsError
    from fleet_rlm.engine import RunError
    from fleet_rlm.redact import Redactor
    from fleet_rlm.tools import ToolLoadError

    expected: tuple[type[BaseException], ...] = (ConfigError, DocsError, ToolLoadError, ValueError)
    with contextlib.suppress(ImportError):
        from fleet_rlm.sandbox.modal import ModalBackendError

        expected += (ModalBackendError,)
    try:
        yield
    except RunError as exc:
        raise _fail(Redactor()(str(exc))) from None
    except expected as exc:
        raise _fail(Redactor()(str(exc))) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None


# ---------------------------------------------------------------------------------------------
# Running a workflow
# ---------------------------------------------------------------------------------------------


def _run_config(c: Common):
    """Settings, LMs, sandbox and tools for a run, from options and the environment."""
    from fleet_rlm.config import BACKENDS, NOT_CONFIGURED, ConfigError, load_settings
    from fleet_rlm.engine import SandboxOptions
    from fleet_rlm.lm import make_lms
    from fleet_rlm.runners import RunConfig
    from fleet_rlm.tools import load_tools

    settings = load_settings(c.env_file)
    backend = (c.sandbox or settings.sandbox).lower()
    if backend not in BACKENDS:
        raise ConfigError(f"unknown sandbox {backend!r}; choose one of: {', '.join(BACKENDS)}")
    model = c.lm
    if model is None and settings.lm is None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(NOT_CONFIGURED)
        err.print("[dim]No LM configured (DSPY_LM_MODEL): using the offline local model.[/]")
        model = "local"
    planner, sub = make_lms(settings, model)
    is_local = (model or (settings.lm.model if settings.lm else "")) == "local"
    prompt = c.prompt or ("compact" if is_local else "dspy")
    tools = [t for spec in c.tool for t in load_tools(spec)]
    return RunConfig(
        lm=planner,
        sub_lm=sub,
        sandbox=SandboxOptions(backend=backend, timeout=c.timeout),
        max_iterations=c.max_iterations,
        max_llm_calls=c.max_llm_calls,
        tools=tools,
        prompt=prompt,
    )


def _execute(c: Common, title: str, work: Callable[[Any], Any]) -> None:
    """Run `work(run_config)` with live progress, save the trajectory, print the result."""
    from fleet_rlm.engine import RunError
    from fleet_rlm.trajectory import TrajectoryWriter

    with _user_errors():
        cfg = _run_config(c)
        writer = TrajectoryWriter(c.trajectory_out) if c.trajectory_out else None
        progress = _Progress(title, c.verbose)

        def on_record(record: dict) -> None:
            if writer is not None:
                writer.write(record)
            progress.update(record)

        cfg.on_record = on_record
        try:
            with progress:
                result = work(cfg)
        except RunError:
            if writer is not None:
                writer.close()
                err.print(f"[dim]Trajectory so far saved to {c.trajectory_out}[/]")
            raise
        if writer is not None:
            writer.close()
        _print_result(result, c)


class _Progress:
    """A one-line live status (step, sub-LM calls, elapsed) on stderr; steps in verbose mode."""

    def __init__(self, title: str, verbose: bool) -> None:
        self.title, self.verbose = title, verbose
        self.steps = self.calls = 0
        self.start = time.monotonic()
        self.status = err.status(self._text(), spinner="dots") if err.is_terminal else None

    def _text(self) -> str:
        elapsed = time.monotonic() - self.start
        return (
            f"{escape(self.title)}: step {self.steps} · {self.calls} sub-LM calls · {elapsed:.1f} s"
        )

    def update(self, record: dict) -> None:
        if record.get("type") == "step":
            self.steps = record["index"]
            self.calls += sum(1 for c in record.get("sub_calls", []) if c["tool"].startswith("llm"))
            if self.verbose:
                from fleet_rlm.trajectory import render_step

                render_step(record, err)
        if self.status is not None:
            self.status.update(self._text())

    def __enter__(self) -> _Progress:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *_: Any) -> None:
        if self.status is not None:
            self.status.stop()


def _shorten(value: Any, full: bool, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    if full or len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters; use --full-output)"


def _print_result(result: Any, c: Common) -> None:
    summary = result.summary
    if c.as_json:
        out.print_json(json.dumps({"outputs": result.outputs, "summary": summary}, default=str))
        return
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for name, value in result.outputs.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            shown = "\n".join(f"• {v}" for v in value) or "(none)"
            shown = _shorten(shown, c.full_output)
        else:
            shown = _shorten(value, c.full_output)
        table.add_row(name, escape(shown))
    out.print(table)
    tokens = summary.get("prompt_tokens")
    token_text = (
        f" · {tokens + (summary.get('completion_tokens') or 0):,} tokens"
        if tokens is not None
        else ""
    )
    saved = f" · trajectory: {c.trajectory_out}" if c.trajectory_out else ""
    err.print(
        f"[dim]{summary['iterations']} steps · {summary['sub_lm_calls']} sub-LM calls"
        f"{token_text} · {summary['duration_s']:.1f} s{saved}[/]"
    )


def _corpus(paths: list[Path], chars: int | None = None):
    from fleet_rlm.documents import load_documents

    corpus = load_documents(paths, max_chars=chars)
    for path, reason in corpus.skipped[:5]:
        err.print(f"[yellow]skipped[/] {escape(path)}: {escape(reason)}")
    if len(corpus.skipped) > 5:
        err.print(f"[yellow]skipped {len(corpus.skipped) - 5} more files[/]")
    return corpus


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        out.print(f"fleet-rlm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Recursive Language Models on DSPy: long contexts live in a sandboxed Python REPL."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


@app.command("run-basic")
def run_basic(
    question: Annotated[str, typer.Option(help="The question.")] = (
        "What are the first 12 Fibonacci numbers?"
    ),
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 10,
    max_llm_calls: MaxCallsOpt = 20,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Answer a question by computing in the sandbox (e.g. Fibonacci numbers)."""
    from fleet_rlm.runners import run_basic as runner

    c = Common.of(locals())
    _execute(c, "run-basic", lambda cfg: runner(question, cfg))


@app.command()
def ask(
    docs_path: DocsOpt,
    question: Annotated[str, typer.Option(help="What you want to know.", show_default=False)],
    chars: CharsOpt = None,
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 20,
    max_llm_calls: MaxCallsOpt = 50,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Ask a question about your documents (files or folders); answers cite where from."""
    from fleet_rlm.runners import run_ask

    c = Common.of(locals())
    with _user_errors():
        corpus = _corpus(docs_path, chars)
    _execute(c, "ask", lambda cfg: run_ask(corpus, question, cfg))


def _docs_run(
    c: Common, name: str, docs_path: list[Path], chars: int | None, call: Callable[[str, Any], Any]
) -> None:
    """Load the documents, then run one workflow on their text."""
    with _user_errors():
        docs = _corpus(docs_path, chars).text
    _execute(c, name, lambda cfg: call(docs, cfg))


@app.command("run-architecture")
def run_architecture(
    docs_path: DocsOpt,
    query: Annotated[str, typer.Option(help="What to extract.")] = (
        "Extract all modules and optimizers"
    ),
    chars: CharsOpt = None,
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 20,
    max_llm_calls: MaxCallsOpt = 50,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Extract modules, optimizers and design principles from documentation."""
    from fleet_rlm.runners import run_architecture as runner

    c = Common.of(locals())
    _docs_run(c, "run-architecture", docs_path, chars, lambda d, cfg: runner(d, query, cfg))


@app.command("run-api-endpoints")
def run_api_endpoints(
    docs_path: DocsOpt,
    chars: CharsOpt = None,
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 20,
    max_llm_calls: MaxCallsOpt = 50,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Extract API endpoints from documentation with batched sub-LM calls."""
    from fleet_rlm.runners import run_api_endpoints as runner

    c = Common.of(locals())
    _docs_run(c, "run-api-endpoints", docs_path, chars, runner)


@app.command("run-error-patterns")
def run_error_patterns(
    docs_path: DocsOpt,
    chars: CharsOpt = None,
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 20,
    max_llm_calls: MaxCallsOpt = 50,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Find and categorise the error patterns documentation mentions."""
    from fleet_rlm.runners import run_error_patterns as runner

    c = Common.of(locals())
    _docs_run(c, "run-error-patterns", docs_path, chars, runner)


@app.command("run-custom-tool")
def run_custom_tool(
    docs_path: DocsOpt,
    chars: CharsOpt = None,
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 20,
    max_llm_calls: MaxCallsOpt = 50,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Describe a document's headers and code blocks using the host regex_extract tool."""
    from fleet_rlm.runners import run_custom_tool as runner

    c = Common.of(locals())
    _docs_run(c, "run-custom-tool", docs_path, chars, runner)


@app.command("run-trajectory")
def run_trajectory(
    docs_path: DocsOpt,
    chars: Annotated[int, typer.Option("--chars", min=1, help="Sample size.")] = 5000,
    lm: LmOpt = None,
    sandbox: SandboxOpt = None,
    max_iterations: MaxIterOpt = 10,
    max_llm_calls: MaxCallsOpt = 20,
    timeout: TimeoutOpt = 120.0,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
    full_output: FullOpt = False,
    trajectory_out: TrajOpt = None,
    env_file: EnvOpt = None,
    tool: ToolOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Summarize a sample of the docs, then show every step: reasoning, code, output."""
    from fleet_rlm.runners import run_trajectory as runner

    c = Common.of(locals())
    c.verbose = False  # the steps are shown after the result instead
    with _user_errors():
        sample = _corpus(docs_path, chars).text
    steps: list[dict] = []

    def work(cfg: Any) -> Any:
        inner = cfg.on_record

        def record(r: dict) -> None:
            inner(r)
            if r["type"] == "step":
                steps.append(r)

        cfg.on_record = record
        return runner(sample, cfg)

    _execute(c, "run-trajectory", work)
    if not as_json:
        from fleet_rlm.trajectory import render_step

        for step in steps:
            render_step(step, out)


@app.command()
def view(
    trajectory: Annotated[Path, typer.Argument(help="A trajectory .jsonl file.")],
    html: Annotated[Path | None, typer.Option("--html", help="Also write a web page here.")] = None,
) -> None:
    """Show a saved trajectory in the terminal, or write it as one self-contained HTML page."""
    from fleet_rlm.trajectory import TrajectoryError, read_trajectory, render_html, render_terminal

    try:
        traj = read_trajectory(trajectory)
    except FileNotFoundError:
        raise _fail(f"trajectory file not found: {trajectory}") from None
    except TrajectoryError as exc:
        raise _fail(str(exc)) from None
    if html is not None:
        html.write_text(render_html(traj), encoding="utf-8")
        err.print(f"wrote {html}")
    else:
        render_terminal(traj, out)


@app.command("check-secret")
def check_secret(
    name: Annotated[str, typer.Option("--name", help="Modal secret name.")] = "LITELLM",
) -> None:
    """Check that a Modal secret holds the expected keys (lengths only, never values)."""
    with _user_errors():
        from fleet_rlm.sandbox.modal import check_secret as check

        rows = check(name)
    table = Table("key", "present", "length")
    for key, present, length in rows:
        table.add_row(key, "yes" if present else "[red]no[/]", str(length))
    out.print(table)
    if not all(present for _, present, _ in rows):
        raise typer.Exit(1)


@app.command("check-secret-key")
def check_secret_key(
    key: Annotated[str, typer.Option("--key", help="The key to inspect.")] = "DSPY_LLM_API_KEY",
    name: Annotated[str, typer.Option("--name", help="Modal secret name.")] = "LITELLM",
) -> None:
    """Check one key of a Modal secret: present or not, and its length."""
    with _user_errors():
        from fleet_rlm.sandbox.modal import check_secret_key as check

        present, length = check(name, key)
    out.print(f"{key}: {'present' if present else 'missing'} (length {length})")
    if not present:
        raise typer.Exit(1)


def run() -> None:  # pragma: no cover - console entry for `python -m fleet_rlm`
    app()
    sys.exit(0)


@app.command()
def bench(
    suite: Annotated[str, typer.Option(help="small (minutes) or full (hours).")] = "small",
    methods: Annotated[str, typer.Option(help="Comma-separated: rlm, direct, dspy-rlm.")] = (
        "rlm,direct"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Results folder.")] = Path(
        "results/bench-e2e"
    ),
    limit: Annotated[int | None, typer.Option(min=1, help="Run only the first N tasks.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this task kind: niah or oolong.")] = None,
    lm: LmOpt = None,
    max_iterations: MaxIterOpt = 8,
    max_llm_calls: MaxCallsOpt = 20,
    timeout: TimeoutOpt = 60.0,
    direct_chars: Annotated[
        int, typer.Option(min=1000, help="Context the model alone sees (its window).")
    ] = 24_000,
    env_file: EnvOpt = None,
    prompt: PromptOpt = None,
) -> None:
    """Long-context benchmark (S-NIAH, OOLONG-style): RLM vs the model alone, same LM."""
    import itertools
    import platform

    from fleet_rlm.bench import full_suite, small_suite
    from fleet_rlm.bench.run import METHODS, run_benchmark, size_label, write_results

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METHODS]
    if bad or not chosen:
        raise _fail(
            f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}"
        )
    if suite not in ("small", "full"):
        raise _fail(f"unknown suite {suite!r}; choose small or full")
    c = Common(
        lm=lm,
        sandbox="local",
        max_iterations=max_iterations,
        max_llm_calls=max_llm_calls,
        timeout=timeout,
        env_file=env_file,
        prompt=prompt,
    )
    with _user_errors():
        cfg = _run_config(c)
    tasks = small_suite() if suite == "small" else full_suite()
    if kind is not None:
        tasks = [t for t in tasks if t.kind == kind]
        if not tasks:
            raise _fail(f"no tasks of kind {kind!r}; choose niah or oolong")
    tasks = list(itertools.islice(tasks, limit)) if limit else tasks

    def show(o: Any) -> None:
        mark = "[green]ok[/]" if o.score >= 1 else f"[yellow]{o.score:.2f}[/]"
        err.print(
            f"{o.kind:7} {size_label(o.size):>5} {o.method:9} {mark} {o.seconds:6.1f} s "
            f"{o.lm_calls:3} calls  {escape((o.failure or '') if o.score < 1 else '')}"
        )

    outcomes = run_benchmark(
        tasks,
        chosen,
        cfg.lm,
        on_outcome=show,
        max_iterations=max_iterations,
        max_llm_calls=max_llm_calls,
        direct_chars=direct_chars,
        timeout=timeout,
        prompt=cfg.prompt,
    )
    meta = {
        "model": getattr(cfg.lm, "model", type(cfg.lm).__name__),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "command": "fleet-rlm bench " + " ".join(sys.argv[2:]),
    }
    paths = write_results(outcomes, out_dir, meta)
    out.print(paths["markdown"].read_text())
    for kind, path in paths.items():
        err.print(f"wrote {kind}: {path}")
