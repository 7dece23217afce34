"""Speed of the offline model (`--lm local`): prompt reading, generation, and prefix reuse.

Run: `uv run --extra local python benchmarks/bench_local_lm.py` (about a minute on 2 cores).
These are the numbers that decide an RLM step's wait: each step re-sends the prompt, and
llama.cpp's prefix cache is what keeps that from being re-read.
"""

from __future__ import annotations

import json
import time
import urllib.request

from fleet_rlm.local_lm import LocalLMServer

# About 1,200 tokens of static instructions, like an RLM planner prompt.
PREFIX = "You work in a Python REPL. " + " ".join(
    f"Rule {i}: keep outputs short, search the context with code, never print it whole."
    for i in range(60)
)


def chat(api: str, system: str, user: str, max_tokens: int) -> tuple[dict, float]:
    body = json.dumps(
        {
            "model": "local",
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
    ).encode()
    request = urllib.request.Request(
        f"{api}/chat/completions", body, {"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=900) as response:
        usage = json.load(response)["usage"]
    return usage, time.perf_counter() - t0


def main() -> None:
    with LocalLMServer() as server:
        api = server.api_base
        chat(api, "Say hi.", "hi", 1)  # load weights into the page cache
        cold, t_cold = chat(api, PREFIX, "Step 1.", 1)
        warm, t_warm = chat(api, PREFIX, "Step 2.", 1)
        gen, t_gen = chat(api, "You count.", "Count from 1 to 400, one number per line.", 256)
    print(f"model: {server.model_name}")
    print(
        f"cold prompt: {cold['prompt_tokens']} tokens in {t_cold:.2f} s "
        f"= {cold['prompt_tokens'] / t_cold:.1f} tokens/s"
    )
    print(f"same prefix, next request: {warm['prompt_tokens']} tokens in {t_warm:.2f} s")
    print(
        f"generation: {gen['completion_tokens']} tokens in {t_gen:.2f} s "
        f"= {gen['completion_tokens'] / t_gen:.1f} tokens/s"
    )


if __name__ == "__main__":
    main()
