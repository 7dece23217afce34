"""RLM trajectories as JSON Lines: write them live, read them back, show them to a person.

A trajectory file is one JSON object per line: a ``run`` record first, one ``step`` record per
REPL iteration, and a ``result`` record last. Lines are flushed as they are written, so a run
that crashes or is killed still leaves a readable file (without a result line).

Everything shown comes from model-written code and may be hostile, so the HTML renderer escapes
every string and the page carries a Content-Security-Policy that forbids scripts and network.
"""

from __future__ import annotations

import html
import json
import math
import re
import reprlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "SCHEMA_VERSION",
    "Trajectory",
    "TrajectoryError",
    "TrajectoryWriter",
    "read_trajectory",
    "render_html",
    "render_step",
    "render_terminal",
    "summarize_inputs",
    "utc_now",
]

SCHEMA_VERSION = 1
RECORD_TYPES = ("run", "step", "result")

Record = dict[str, Any]
Redact = Callable[[str], str]


class TrajectoryError(ValueError):
    """The file is not a fleet-rlm trajectory, or a record is malformed."""


def utc_now() -> str:
    """ISO 8601 timestamp for ``started_at``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def summarize_inputs(inputs: Mapping[str, Any], preview_chars: int = 200) -> dict[str, Any]:
    """``{name: {type, length, preview}}`` for the run record: never the whole (huge) input."""
    # reprlib bounds the work for huge lists/dicts: json.dumps of a GB-sized value for 200 chars
    # of preview would be the slowest part of a run.
    short = reprlib.Repr()
    short.maxstring = short.maxother = preview_chars
    short.maxlist = short.maxdict = short.maxtuple = short.maxset = 20
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        text = value if isinstance(value, str) else short.repr(value)
        try:
            length = len(value)
        except TypeError:
            length = len(text)
        out[name] = {
            "type": type(value).__name__,
            "length": length,
            "preview": text[:preview_chars],
        }
    return out


# --- writing ---------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Values json cannot encode: pydantic models, sets, paths... become plain data or str."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def _apply(value: Any, redact: Redact) -> Any:
    """Run ``redact`` over every string value inside JSON-like data (keys are schema names)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _apply(v, redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_apply(v, redact) for v in value]
    return value


class TrajectoryWriter:
    """Append trajectory records to a JSONL file, one flushed line per record.

    Use as ``on_record=writer.write`` or call :meth:`write` yourself; ``redact`` (for example
    ``fleet_rlm.redact.Redactor()``) is applied to every string value before it reaches disk.
    Thread-safe: sub-LM calls may finish on worker threads.
    """

    def __init__(self, path: str | Path, redact: Redact | None = None) -> None:
        self.path = Path(path)
        self.redact = redact
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("w", encoding="utf-8", newline="\n")
        self._lock = threading.Lock()
        self._count = 0
        self._finished = False

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one ``run``/``step``/``result`` record; the first must be ``run``."""
        if not isinstance(record, Mapping) or record.get("type") not in RECORD_TYPES:
            raise TrajectoryError(f"record type must be one of {RECORD_TYPES}: {record!r:.200}")
        kind = record["type"]
        data: dict[str, Any] = dict(record)
        if kind == "run":
            data.setdefault("version", SCHEMA_VERSION)
            data.setdefault("started_at", utc_now())
        if self.redact is not None:
            data = _apply(data, self.redact)
        line = json.dumps(data, ensure_ascii=False, default=_json_default)
        with self._lock:
            if self._fh is None:
                raise TrajectoryError(f"trajectory writer for {self.path} is closed")
            if self._count == 0 and kind != "run":
                raise TrajectoryError("the first trajectory record must be the 'run' record")
            if self._count > 0 and kind == "run":
                raise TrajectoryError("a trajectory has exactly one 'run' record")
            if self._finished:
                raise TrajectoryError("no records may follow the 'result' record")
            self._fh.write(line + "\n")
            self._fh.flush()
            self._count += 1
            self._finished = kind == "result"

    __call__ = write

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- reading ---------------------------------------------------------------------------------


@dataclass
class Trajectory:
    """A parsed trajectory; ``result`` is None when the run was interrupted."""

    run: Record
    steps: list[Record] = field(default_factory=list)
    result: Record | None = None
    truncated: bool = False  # the last line was cut off mid-write

    @property
    def interrupted(self) -> bool:
        return self.result is None

    @property
    def status(self) -> str:
        """``completed``, ``failed`` (result with an error) or ``interrupted`` (no result)."""
        if self.result is None:
            return "interrupted"
        return "failed" if self.result.get("error") else "completed"

    def totals(self) -> dict[str, Any]:
        """Run-level numbers, from the result line or, for an interrupted run, from the steps."""
        r = self.result or {}
        step_prompt = _sum(s.get("lm", {}).get("prompt_tokens") for s in self.steps)
        step_completion = _sum(s.get("lm", {}).get("completion_tokens") for s in self.steps)
        step_time = sum(_num(s.get("duration_s")) or 0.0 for s in self.steps)
        step_lm_time = _sum(s.get("lm", {}).get("duration_s") for s in self.steps)
        return {
            "iterations": r.get("iterations", len(self.steps)),
            "duration_s": r.get("duration_s", step_time + (step_lm_time or 0.0)),
            "lm_calls": r.get("lm_calls", len(self.steps)),
            "sub_lm_calls": r.get(
                "sub_lm_calls",
                sum(_lm_calls_in(c) for s in self.steps for c in s.get("sub_calls") or []),
            ),
            "prompt_tokens": r.get("prompt_tokens", step_prompt),
            "completion_tokens": r.get("completion_tokens", step_completion),
        }


# Result fields the header already shows; any others (backend counters...) are listed as extras.
_KNOWN_RESULT_FIELDS = frozenset(
    {
        "type",
        "outputs",
        "error",
        "final_reasoning",
        "duration_s",
        "iterations",
        "lm_calls",
        "sub_lm_calls",
        "prompt_tokens",
        "completion_tokens",
    }
)


def _lm_calls_in(call: Mapping[str, Any]) -> int:
    """Sub-LM calls one sub-call record stands for (a batch counts each prompt)."""
    tool = call.get("tool")
    if tool == "llm_query":
        return 1
    if tool != "llm_query_batched":
        return 0
    prompt = call.get("prompt")
    if isinstance(prompt, str):
        try:
            prompt = json.loads(prompt)
        except ValueError:
            return 1
    return len(prompt) if isinstance(prompt, list) else 1


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def _sum(values: Iterable[Any]) -> int | float | None:
    nums = [n for n in (_num(v) for v in values) if n is not None]
    return sum(nums) if nums else None


def _check_run_record(path: Path, lineno: int, run: Record) -> None:
    if run.get("type") != "run":
        raise TrajectoryError(
            f"{path} is not an RLM trajectory: line {lineno} is a {run.get('type')!r} "
            "record, expected the 'run' record first"
        )
    version = run.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TrajectoryError(f"{path}: the run record has no valid schema 'version'")
    if version > SCHEMA_VERSION:
        raise TrajectoryError(
            f"{path} uses trajectory schema v{version}; this fleet-rlm reads up to "
            f"v{SCHEMA_VERSION} (upgrade fleet-rlm)"
        )


def read_trajectory(path: str | Path) -> Trajectory:
    """Parse a trajectory file; tolerant of a missing result line or a half-written last line.

    Raises TrajectoryError if the file is not a trajectory (empty, not JSON Lines, no ``run``
    record first, newer schema) or a line in the middle is corrupt; OSError (for example
    FileNotFoundError) if it cannot be read.
    """
    path = Path(path)
    run: Record | None = None
    rest: list[tuple[int, Record]] = []
    bad: tuple[int, str] | None = None  # an unparsable line; fine only if it is the last one
    # Streamed line by line so a large non-trajectory file fails on its first line.
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if bad is not None:
                raise TrajectoryError(f"{path} has a corrupt line (line {bad[0]}: {bad[1]})")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if run is None:
                    raise TrajectoryError(
                        f"{path} is not an RLM trajectory (line {lineno}: {exc.msg})"
                    ) from None
                bad = (lineno, exc.msg)
                continue
            if not isinstance(record, dict) or "type" not in record:
                if run is None:
                    raise TrajectoryError(
                        f"{path} is not an RLM trajectory (line {lineno} has no 'type')"
                    )
                raise TrajectoryError(
                    f"{path} line {lineno}: a record must be an object with 'type'"
                )
            if run is None:
                _check_run_record(path, lineno, record)
                run = record
            else:
                rest.append((lineno, record))
    if run is None:
        raise TrajectoryError(f"{path} is empty, not an RLM trajectory")
    truncated = bad is not None  # a crash mid-write leaves a partial final line
    traj = Trajectory(run=run, truncated=truncated)
    for lineno, record in rest:
        kind = record["type"]
        if kind == "step":
            traj.steps.append(record)
        elif kind == "result":
            traj.result = record
        elif kind == "run":
            raise TrajectoryError(f"{path} line {lineno}: a second 'run' record")
        # Unknown record types are skipped: newer writers may add some.
    return traj


# --- shared formatting -----------------------------------------------------------------------


def fmt_duration(seconds: Any) -> str:
    s = _num(seconds)
    if s is None:
        return "—"
    if 0 < s < 0.001:
        return "<1 ms"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(s, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def fmt_int(value: Any) -> str:
    n = _num(value)
    return "—" if n is None else f"{int(n):,}"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3g}"
    return fmt_int(value) if _num(value) is not None else str(value)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=_json_default)
    except (TypeError, ValueError):
        return repr(value)


def _tokens(lm: Mapping[str, Any] | None) -> str:
    lm = lm or {}
    p, c = lm.get("prompt_tokens"), lm.get("completion_tokens")
    if _num(p) is None and _num(c) is None:
        return "tokens —"
    return f"{fmt_int(p)} → {fmt_int(c)} tokens"


def _shorten(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    return text[:limit] + f"\n… [{len(text) - limit:,} more characters]"


# --- terminal --------------------------------------------------------------------------------


def render_step(step: Mapping[str, Any], console: Any = None, max_chars: int = 3000) -> None:
    """Print one step record as a rich panel (used live by the CLI's verbose mode).

    ``max_chars`` cuts each long text (reasoning, output, prompts); 0 shows everything.
    """
    from rich.console import Console, Group
    from rich.markup import escape
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    parts: list[Any] = []
    reasoning = str(step.get("reasoning") or "")
    if reasoning:
        parts += [Text("Reasoning", style="bold magenta"), Text(_shorten(reasoning, max_chars))]
    parts += [
        Text("Code", style="bold magenta"),
        Syntax(str(step.get("code") or ""), "python", theme="monokai", word_wrap=True),
    ]
    out_style = "red" if step.get("error") else ""
    output = str(step.get("output") or "")
    parts += [
        Text("Error" if step.get("error") else "Output", style=f"bold {out_style or 'magenta'}"),
        Text(_shorten(output, max_chars) or "(no output)", style=out_style or "dim"),
    ]
    calls = step.get("sub_calls") or []
    if calls:
        table = Table(show_header=True, header_style="bold", expand=True, show_lines=True)
        table.add_column("tool", no_wrap=True)
        table.add_column("prompt", ratio=1)
        table.add_column("response", ratio=1)
        table.add_column("time", no_wrap=True, justify="right")
        for call in calls:
            resp = Text(_shorten(_to_text(call.get("response", "")), max_chars // 4 or 0))
            if call.get("error"):
                resp = Text(str(call["error"]), style="red")
            table.add_row(
                escape(str(call.get("tool", "?"))),
                Text(_shorten(_to_text(call.get("prompt", "")), max_chars // 4 or 0)),
                resp,
                fmt_duration(call.get("duration_s")),
            )
        parts += [Text(f"Sub-calls ({len(calls)})", style="bold magenta"), table]
    title = (
        f"[bold]Step {escape(str(step.get('index', '?')))}[/] · "
        f"{fmt_duration(step.get('duration_s'))} exec · "
        f"LM {fmt_duration((step.get('lm') or {}).get('duration_s'))} · "
        f"{escape(_tokens(step.get('lm')))}"
    )
    console.print(
        Panel(Group(*parts), title=title, border_style="red" if step.get("error") else "blue")
    )


def render_terminal(traj: Trajectory, console: Any = None, max_chars: int = 3000) -> None:
    """Print the trajectory with rich: a summary panel, one panel per step, then the result.

    ``max_chars`` cuts each long text (output, prompts) for the terminal; 0 shows everything.
    """
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    run = traj.run
    totals = traj.totals()
    status_style = {"completed": "green", "failed": "red", "interrupted": "yellow"}[traj.status]

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold cyan", no_wrap=True)
    head.add_column()
    head.add_row("status", Text(traj.status, style=f"bold {status_style}"))
    head.add_row("signature", Text(str(run.get("signature", ""))))
    model = str(run.get("model", "?"))
    if run.get("sub_model"):
        model += f"  (sub-LM: {run['sub_model']})"
    head.add_row("model", Text(model))
    head.add_row("backend", Text(str(run.get("backend", "?"))))
    head.add_row("started", Text(str(run.get("started_at", "?"))))
    head.add_row(
        "totals",
        Text(
            f"{fmt_int(totals['iterations'])} iterations · {fmt_duration(totals['duration_s'])} · "
            f"{fmt_int(totals['lm_calls'])} LM calls · {fmt_int(totals['sub_lm_calls'])} sub-LM "
            f"calls · {fmt_int(totals['prompt_tokens'])} → "
            f"{fmt_int(totals['completion_tokens'])} tokens"
        ),
    )
    for name, info in (run.get("inputs") or {}).items():
        info = info if isinstance(info, Mapping) else {}
        preview = _shorten(str(info.get("preview", "")).replace("\n", " "), 100)
        head.add_row(
            f"input {name}",
            Text(f"{info.get('type', '?')}, {fmt_int(info.get('length'))} chars: {preview}"),
        )
    console.print(Panel(head, title="[bold]RLM trajectory[/]", border_style=status_style))

    for step in traj.steps:
        render_step(step, console, max_chars)

    if traj.result is None:
        note = "no result line: the run was interrupted"
        if traj.truncated:
            note += " (the last line was cut off)"
        console.print(Panel(Text(note, style="yellow"), border_style="yellow", title="Result"))
        return
    res = traj.result
    body: list[Any] = []
    if res.get("error"):
        body.append(Text(f"Error: {res['error']}", style="bold red"))
    for name, value in (res.get("outputs") or {}).items():
        body += [Text(str(name), style="bold cyan"), Text(_shorten(_to_text(value), max_chars))]
    if res.get("final_reasoning"):
        body += [
            Text("final reasoning", style="bold cyan"),
            Text(_shorten(str(res["final_reasoning"]), max_chars), style="dim"),
        ]
    console.print(Panel(Group(*body), title="[bold]Result[/]", border_style=status_style))


# --- HTML ------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(text: str) -> str:
    """Text safe to put in a UTF-8 page: lone surrogates and control bytes become U+FFFD."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("\ufffd", text)


def esc(value: Any) -> str:
    return html.escape(_clean(value if isinstance(value, str) else _to_text(value)), quote=True)


def _highlighter() -> tuple[Callable[[str], str], str]:
    """(code -> HTML, CSS) with pygments if installed, else escaped plain text."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pragma: no cover - pygments ships with rich
        return (lambda code: f'<pre class="code">{esc(code)}</pre>'), ""
    formatter = HtmlFormatter(cssclass="code", style="github-dark", nowrap=False)
    lexer = PythonLexer(stripnl=False, ensurenl=False)

    def render(code: str) -> str:
        return highlight(_clean(code), lexer, formatter)

    return render, formatter.get_style_defs(".code")


_CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e4e7ec;--accent:#4f46e5;
--ok:#0f9f6e;--bad:#d92d20;--warn:#b54708;--code:#0d1117;--mono:ui-monospace,SFMono-Regular,
Menlo,Consolas,"Liberation Mono",monospace}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 24px 64px}
h1{font-size:22px;margin:0}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);
margin:18px 0 6px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px;
margin:0 0 18px;box-shadow:0 1px 2px rgba(16,24,40,.05)}
.top{display:flex;align-items:center;gap:12px;flex-wrap:wrap}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;
text-transform:uppercase;letter-spacing:.04em}
.completed{background:#d1fadf;color:#05603a}.failed{background:#fee4e2;color:#b42318}
.interrupted{background:#fef0c7;color:#93370d}
.sig{font-family:var(--mono);font-size:14px;color:var(--accent);background:#eef2ff;padding:2px 8px;
border-radius:6px}
.meta{color:var(--muted);font-size:13px;margin-top:6px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin-top:16px}
.stat{border:1px solid var(--line);border-radius:10px;padding:10px 14px;background:#fcfcfd}
.stat b{display:block;font-size:20px;font-variant-numeric:tabular-nums}
.stat span{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}
td.key{white-space:nowrap;font-family:var(--mono);font-size:12.5px}
td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
.card>h2:first-child{margin-top:0}
td.mono,.mono{font-family:var(--mono);font-size:12.5px;white-space:pre-wrap;word-break:break-word}
nav.steps{display:flex;flex-wrap:wrap;gap:6px;margin:0 0 18px}
nav.steps a{font-size:12px;text-decoration:none;color:var(--ink);border:1px solid var(--line);
background:var(--card);border-radius:999px;padding:3px 10px}
nav.steps a.err{border-color:#fda29b;color:var(--bad)}
.step{border-left:4px solid var(--accent)}
.step.err{border-left-color:var(--bad)}
.step-head{display:flex;align-items:baseline;gap:12px;flex-wrap:wrap;margin-bottom:4px}
.step-head h3{margin:0;font-size:17px}
.chip{font-size:12px;color:var(--muted);background:var(--bg);border:1px solid var(--line);
border-radius:999px;padding:1px 9px;font-variant-numeric:tabular-nums}
.chip.bad{color:var(--bad);border-color:#fda29b;background:#fef3f2}
.reasoning{white-space:pre-wrap;word-break:break-word;margin:0;color:#344054}
pre{margin:0;font-family:var(--mono);font-size:13px;line-height:1.5;white-space:pre-wrap;
word-break:break-word}
.code{background:var(--code);border-radius:8px;padding:12px 14px;overflow:auto}
.code pre{color:#e6edf3}
pre.out{background:#f9fafb;border:1px solid var(--line);border-radius:8px;padding:10px 14px;
max-height:420px;overflow:auto}
pre.out.bad{background:#fef3f2;border-color:#fecdca;color:#912018}
.empty{color:var(--muted);font-style:italic}
details{border:1px solid var(--line);border-radius:8px;margin:6px 0;background:#fcfcfd}
details>summary{cursor:pointer;padding:7px 12px;font-size:13px;display:flex;gap:10px;
align-items:baseline;list-style:none}
details>summary::-webkit-details-marker{display:none}
details>summary::before{content:"\\25B8";color:var(--muted);display:inline-block;width:10px;
transition:transform .15s}
details[open]>summary::before{transform:rotate(90deg)}
details>summary:hover{background:#f2f4f7}
details>summary .tool{font-family:var(--mono);font-weight:600;color:var(--accent)}
details>summary .pv{color:var(--muted);overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
flex:1;min-width:0}
details[open]>summary{border-bottom:1px solid var(--line)}
details .io{padding:8px 12px}
details .io h4{margin:6px 0 4px;font-size:12px;color:var(--muted);text-transform:uppercase;
letter-spacing:.05em}
details .io pre{background:var(--card);border:1px solid var(--line);border-radius:6px;
padding:8px 10px;max-height:360px;overflow:auto}
.result.ok{border-left:4px solid var(--ok)}.result.bad{border-left:4px solid var(--bad)}
.result.warn{border-left:4px solid var(--warn)}
.field{margin:10px 0}.field .name{font-family:var(--mono);font-weight:600;font-size:13px;
color:var(--accent)}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:28px}
"""


def _stat(value: str, label: str) -> str:
    return f'<div class="stat"><b>{esc(value)}</b><span>{esc(label)}</span></div>'


def _pre(text: str, cls: str = "out") -> str:
    if not text:
        return '<p class="empty">(no output)</p>'
    return f'<pre class="{cls}">{esc(text)}</pre>'


def _render_sub_call(call: Mapping[str, Any], highlight: Callable[[str], str]) -> str:
    tool = str(call.get("tool", "?"))
    prompt = _to_text(call.get("prompt", ""))
    response = _to_text(call.get("response", ""))
    error = call.get("error")
    preview = " ".join(prompt.split())[:160]
    chips = f'<span class="chip">{esc(fmt_duration(call.get("duration_s")))}</span>'
    if error:
        chips += '<span class="chip bad">error</span>'
    parts = [
        f'<details><summary><span class="tool">{esc(tool)}</span>'
        f'<span class="pv">{esc(preview)}</span>{chips}</summary><div class="io">',
        f"<h4>{'Prompt' if tool.startswith('llm_query') else 'Arguments'}</h4>",
        f"<pre>{esc(prompt)}</pre>",
        f"<h4>{'Response' if tool.startswith('llm_query') else 'Returned'}</h4>",
        f"<pre>{esc(response)}</pre>" if response else '<p class="empty">(empty)</p>',
    ]
    if error:
        parts.append(f'<h4>Error</h4><pre class="out bad">{esc(error)}</pre>')
    parts.append("</div></details>")
    return "".join(parts)


def _render_step(step: Mapping[str, Any], highlight: Callable[[str], str]) -> str:
    index = step.get("index", "?")
    is_err = bool(step.get("error"))
    lm = step.get("lm") or {}
    chips = [
        f'<span class="chip">exec {esc(fmt_duration(step.get("duration_s")))}</span>',
        f'<span class="chip">LM {esc(fmt_duration(lm.get("duration_s")))}</span>',
        f'<span class="chip">{esc(_tokens(lm))}</span>',
    ]
    calls = step.get("sub_calls") or []
    if calls:
        chips.append(f'<span class="chip">{len(calls)} sub-call{"s" * (len(calls) != 1)}</span>')
    if is_err:
        chips.append('<span class="chip bad">error</span>')
    out = [
        f'<section class="card step{" err" * is_err}" id="step-{esc(index)}">',
        f'<div class="step-head"><h3>Step {esc(index)}</h3>{"".join(chips)}</div>',
    ]
    reasoning = str(step.get("reasoning") or "")
    if reasoning:
        out.append(f'<h2>Reasoning</h2><p class="reasoning">{esc(reasoning)}</p>')
    out.append(f"<h2>Code</h2>{highlight(str(step.get('code') or ''))}")
    out.append(f"<h2>{'Error' if is_err else 'Output'}</h2>")
    out.append(_pre(str(step.get("output") or ""), "out bad" if is_err else "out"))
    if calls:
        out.append(f"<h2>Sub-calls ({len(calls)})</h2>")
        out += [_render_sub_call(c, highlight) for c in calls]
    out.append("</section>")
    return "\n".join(out)


def _render_result(traj: Trajectory) -> str:
    res = traj.result
    if res is None:
        note = "No result line: the run was interrupted before it finished."
        if traj.truncated:
            note += " The last line was cut off mid-write."
        return f'<section class="card result warn"><h2>Result</h2><p>{esc(note)}</p></section>'
    cls = "bad" if res.get("error") else "ok"
    out = [f'<section class="card result {cls}"><h2>Result</h2>']
    if res.get("error"):
        out.append(f'<pre class="out bad">{esc(res["error"])}</pre>')
    outputs = res.get("outputs")
    if isinstance(outputs, Mapping):
        for name, value in outputs.items():
            out.append(
                f'<div class="field"><div class="name">{esc(name)}</div>'
                f"{_pre(_to_text(value))}</div>"
            )
    elif outputs is not None:
        out.append(_pre(_to_text(outputs)))
    if res.get("final_reasoning"):
        out.append(
            f'<h2>Final reasoning</h2><p class="reasoning">{esc(res["final_reasoning"])}</p>'
        )
    out.append("</section>")
    return "\n".join(out)


def render_html(traj: Trajectory, title: str | None = None) -> str:
    """One self-contained HTML page (inline CSS, no scripts, no network) showing every step."""
    highlight, code_css = _highlighter()
    run = traj.run
    totals = traj.totals()
    status = traj.status
    page_title = title or f"RLM trajectory · {run.get('signature', '')}"

    model = str(run.get("model", "?"))
    meta = [f"model <b>{esc(model)}</b>"]
    if run.get("sub_model"):
        meta.append(f"sub-LM <b>{esc(run['sub_model'])}</b>")
    meta += [
        f"backend <b>{esc(run.get('backend', '?'))}</b>",
        f"started <b>{esc(run.get('started_at', '?'))}</b>",
        f"schema v{esc(run.get('version', '?'))}",
    ]
    stats = "".join(
        [
            _stat(fmt_int(totals["iterations"]), "iterations"),
            _stat(fmt_duration(totals["duration_s"]), "wall time"),
            _stat(fmt_int(totals["lm_calls"]), "planner LM calls"),
            _stat(fmt_int(totals["sub_lm_calls"]), "sub-LM calls"),
            _stat(fmt_int(totals["prompt_tokens"]), "prompt tokens"),
            _stat(fmt_int(totals["completion_tokens"]), "completion tokens"),
            *(
                _stat(_fmt_value(v), k.replace("_", " "))
                for k, v in (traj.result or {}).items()
                if k not in _KNOWN_RESULT_FIELDS and isinstance(v, (int, float, str))
            ),
        ]
    )
    inputs = run.get("inputs") or {}
    input_rows = "".join(
        f'<tr><td class="key">{esc(name)}</td><td>{esc(info.get("type", "?"))}</td>'
        f'<td class="num">{esc(fmt_int(info.get("length")))}</td>'
        f'<td class="mono">{esc(_shorten(str(info.get("preview", "")), 300))}</td></tr>'
        for name, info in inputs.items()
        if isinstance(info, Mapping)
    )
    header = [
        '<section class="card">',
        f'<div class="top"><h1>RLM trajectory</h1><span class="badge {status}">{status}</span>'
        f'<span class="sig">{esc(run.get("signature", ""))}</span></div>',
        f'<div class="meta">{" · ".join(meta)}</div>',
        f'<div class="stats">{stats}</div>',
    ]
    if input_rows:
        header.append(
            "<h2>Inputs</h2><table><tr><th>name</th><th>type</th><th>length</th>"
            f"<th>preview</th></tr>{input_rows}</table>"
        )
    if run.get("instructions"):
        header.append(
            f'<details><summary>Instructions</summary><div class="io"><pre>'
            f"{esc(run['instructions'])}</pre></div></details>"
        )
    if run.get("settings"):
        header.append(
            f'<details><summary>Settings</summary><div class="io"><pre>'
            f"{esc(_to_text(run['settings']))}</pre></div></details>"
        )
    header.append("</section>")

    nav = ""
    if traj.steps:
        err_cls = ' class="err"'
        links = "".join(
            f'<a href="#step-{esc(s.get("index", "?"))}"{err_cls * bool(s.get("error"))}>'
            f"Step {esc(s.get('index', '?'))}</a>"
            for s in traj.steps
        )
        nav = f'<nav class="steps">{links}</nav>'

    body = "\n".join(
        [*header, nav, *(_render_step(s, highlight) for s in traj.steps), _render_result(traj)]
    )
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(page_title)}</title>\n"
        f"<style>{_CSS}\n{code_css}</style></head>\n"
        f"<body><main>\n{body}\n"
        "<footer>fleet-rlm trajectory viewer</footer>\n</main></body></html>\n"
    )
