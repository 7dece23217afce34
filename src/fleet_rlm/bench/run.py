"""End-to-end long-context benchmark: RLM vs the model alone vs dspy.RLM's default sandbox.

Same LM, same seeded instances for every method. Reports per task kind and context size:
score, LM calls, tokens, wall time, and failures by cause; writes JSON, Markdown and a plot.
Works with any LM (the offline model or a hosted one).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import dspy

from fleet_rlm.bench.tasks import Task, score
from fleet_rlm.engine import RunError, SandboxOptions, run_rlm, token_usage
from fleet_rlm.signatures import EXPLORE

METHODS = ("rlm", "direct", "dspy-rlm")


class LongContextQA(dspy.Signature):
    __doc__ = "Answer the question about the context. " + EXPLORE

    context: str = dspy.InputField(desc="a long text")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the answer only, as short as possible")


class DirectQA(dspy.Signature):
    """Answer the question about the context. Give the answer only, as short as possible."""

    context: str = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


@dataclass
class Outcome:
    task_id: str
    kind: str
    size: int
    method: str
    score: float
    prediction: str
    gold: str
    lm_calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float
    iterations: int | None = None
    failure: str | None = None  # None, "wrong", "no_answer", "lm_error", "sandbox", "unavailable"


def _classify(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".lower()
    if "sandbox" in text or "interpreter" in text or "deno" in text:
        return "sandbox"
    return "lm_error"


def run_one(
    task: Task,
    method: str,
    lm: dspy.BaseLM,
    *,
    max_iterations: int = 8,
    max_llm_calls: int = 20,
    direct_chars: int = 24_000,
    timeout: float = 60.0,
    prompt: str = "dspy",
) -> Outcome:
    """One task with one method; never raises for a model or sandbox failure."""
    size = len(task.context)
    t0 = time.monotonic()
    prediction, failure, calls, iterations = "", None, 0, None
    tokens: tuple[int | None, int | None] = (None, None)
    inputs = {"context": task.context, "question": task.question}
    try:
        if method == "rlm":
            result = run_rlm(
                LongContextQA,
                inputs,
                lm=lm,
                max_iterations=max_iterations,
                max_llm_calls=max_llm_calls,
                sandbox=SandboxOptions(timeout=timeout),
                prompt=prompt,
            )
            s = result.summary
            prediction = str(result.outputs.get("answer", ""))
            calls, iterations = s["lm_calls"] + s["sub_lm_calls"], s["iterations"]
            tokens = (s["prompt_tokens"], s["completion_tokens"])
        elif method == "direct":
            pred, copy = _direct(task, lm, direct_chars)
            prediction, calls, tokens = (
                str(pred.answer),
                len(copy.history),
                token_usage(copy.history),
            )
        elif method == "dspy-rlm":
            from fleet_rlm.bench.peers import DenoFactory, deno_available

            if not deno_available():
                return Outcome(
                    task.task_id,
                    task.kind,
                    size,
                    method,
                    0.0,
                    "",
                    str(task.gold),
                    0,
                    None,
                    None,
                    0.0,
                    failure="unavailable",
                )
            planner, sub = lm.copy(), lm.copy()
            rlm = dspy.RLM(
                LongContextQA,
                max_iters=max_iterations,
                max_llm_calls=max_llm_calls,
                sub_lm=sub,
                interpreter_factory=DenoFactory(),
            )
            with dspy.context(lm=planner):
                pred = rlm(**inputs)
            prediction = str(pred.answer)
            calls = len(planner.history) + len(sub.history)
            p1, c1 = token_usage(planner.history)
            p2, c2 = token_usage(sub.history)
            tokens = ((p1 or 0) + (p2 or 0), (c1 or 0) + (c2 or 0))
            iterations = len(pred.trajectory)
        else:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    except RunError as exc:
        failure = _classify(exc)
        summary = exc.records[-1] if exc.records else {}
        calls = summary.get("lm_calls", 0) + summary.get("sub_lm_calls", 0)
        iterations = summary.get("iterations")
    except ValueError:
        raise
    except Exception as exc:  # a peer's failure is a result, not a crash
        failure = _classify(exc)
    value = score(task, prediction) if failure is None else 0.0
    if failure is None and value == 0.0:
        failure = "no_answer" if not prediction.strip() else "wrong"
    return Outcome(
        task.task_id,
        task.kind,
        size,
        method,
        value,
        prediction[:500],
        str(task.gold),
        calls,
        tokens[0],
        tokens[1],
        round(time.monotonic() - t0, 3),
        iterations,
        failure,
    )


def _direct(task: Task, lm: dspy.BaseLM, chars: int) -> tuple[dspy.Prediction, dspy.BaseLM]:
    """The model alone: the context cut to what fits its window (shrunk until it does)."""
    while True:
        copy = lm.copy()
        try:
            with dspy.context(lm=copy):
                pred = dspy.Predict(DirectQA)(context=task.context[:chars], question=task.question)
            return pred, copy
        except Exception as exc:
            if "context" not in str(exc).lower() or chars <= 2_000:
                raise
            chars = chars * 3 // 4  # dense text (numbers, ids) has more tokens per character


def run_benchmark(
    tasks: Iterable[Task],
    methods: Iterable[str],
    lm: dspy.BaseLM,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
    **kwargs,
) -> list[Outcome]:
    outcomes = []
    for task in tasks:
        for method in methods:
            outcome = run_one(task, method, lm, **kwargs)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes


def summarize(outcomes: list[Outcome]) -> list[dict]:
    """One row per (task kind, context size, method)."""
    groups: dict[tuple, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.kind, size_label(o.size), o.method)].append(o)
    rows = []
    order = {"32K": 0, "128K": 1, "1M": 2, "8M": 3}
    for (kind, size, method), items in sorted(
        groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 9), kv[0][2])
    ):
        failures: dict[str, int] = defaultdict(int)
        for o in items:
            if o.failure:
                failures[o.failure] += 1
        prompt = [o.prompt_tokens for o in items if o.prompt_tokens is not None]
        completion = [o.completion_tokens for o in items if o.completion_tokens is not None]
        iters = [o.iterations for o in items if o.iterations]
        rows.append(
            {
                "kind": kind,
                "size": size,
                "method": method,
                "n": len(items),
                "score": statistics.mean(o.score for o in items),
                "lm_calls": statistics.mean(o.lm_calls for o in items),
                "prompt_tokens": statistics.mean(prompt) if prompt else None,
                "completion_tokens": statistics.mean(completion) if completion else None,
                "median_s": statistics.median(o.seconds for o in items),
                "s_per_step": (
                    statistics.median(o.seconds / o.iterations for o in items if o.iterations)
                    if iters
                    else None
                ),
                "failures": dict(failures),
            }
        )
    return rows


def size_label(size: int) -> str:
    """The nominal size a generated context was asked for (generators land just under it)."""
    for label, n in (("8M", 8_000_000), ("1M", 1_000_000), ("128K", 128_000), ("32K", 32_000)):
        if size >= 0.9 * n:
            return label
    return f"{size // 1000}K"


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Model: `{meta.get('model')}` · machine: {meta.get('machine')} · date: {meta.get('date')}",
        f"Command: `{meta.get('command')}`",
        "",
        "| task | context | method | n | score | LM calls | prompt tok | completion tok "
        "| median s | s/step | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def num(v, fmt="{:.0f}"):
            return "-" if v is None else fmt.format(v)

        fails = ", ".join(f"{k} {v}" for k, v in sorted(r["failures"].items())) or "-"
        lines.append(
            f"| {r['kind']} | {r['size']} | {r['method']} | {r['n']} | {r['score']:.2f} | "
            f"{r['lm_calls']:.1f} | {num(r['prompt_tokens'])} | {num(r['completion_tokens'])} | "
            f"{r['median_s']:.1f} | {num(r['s_per_step'], '{:.1f}')} | {fails} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> bool:
    """Score against context size, one line per method, one panel per task kind."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    order = ["32K", "128K", "1M", "8M"]
    kinds = sorted({r["kind"] for r in rows})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for method in METHODS:
            pts = sorted(
                (order.index(r["size"]) if r["size"] in order else 99, r["size"], r["score"])
                for r in rows
                if r["kind"] == kind and r["method"] == method
            )
            if pts:
                ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=method)
        ax.set_title(kind)
        ax.set_xlabel("context (characters)")
        ax.set_ylabel("score")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_results(outcomes: list[Outcome], out_dir: Path, meta: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(outcomes)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md"}
    paths["json"].write_text(
        json.dumps(
            {"meta": meta, "summary": rows, "outcomes": [asdict(o) for o in outcomes]}, indent=2
        )
    )
    paths["markdown"].write_text(markdown(rows, meta))
    png = out_dir / "score_vs_context.png"
    if plot(rows, png):
        paths["plot"] = png
    return paths
