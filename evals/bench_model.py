"""Benchmark the embedded model's llama.cpp server per thread setting: load time, prompt and generation speed.

Usage: python evals/bench_model.py [--threads 1 2] [--runs 4] [--rounds 2] [--max-tokens 64]

For every (n_threads, OMP_WAIT_POLICY) pair it starts the server on loopback, does one warm-up call, then
`--runs` streamed generations of a short Chinese prompt (each prompt starts differently so the server's
prefix cache cannot skip prompt processing). Rounds interleave the settings so a busy neighbour process
skews all of them alike. Prints one table row per setting and the best by overall throughput (which counts stalls).

Left out: long contexts, batch sizes, other quantisations.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import load_config  # noqa: E402
from pipeline.model.client import OpenAIChat  # noqa: E402
from pipeline.model.server import LocalServer, assemble_model  # noqa: E402

PROMPT = ("请为某县税务局党组写一段民主生活会“原因剖析”，围绕理论学习不够深入、服务纳税人意识不强两个问题，"
          "从思想根源上分析原因，约两百字，不要使用 Markdown。")


def one_run(chat: OpenAIChat, index: int, max_tokens: int) -> dict:
    stamps = []
    result = chat.complete([{"role": "user", "content": f"（第 {index} 稿）{PROMPT}"}],
                           on_token=lambda piece: stamps.append(time.perf_counter()), max_tokens=max_tokens)
    start = time.perf_counter() - result.seconds
    first = stamps[0] - start if stamps else result.seconds
    gen = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else 0.0
    return {"ttft": first, "gen_tps": gen, "prompt_tps": result.prompt_tokens / first if first else 0.0,
            "tokens": result.completion_tokens, "seconds": result.seconds}


def bench(model: Path, threads: int, passive: bool, runs: int, max_tokens: int, n_ctx: int) -> dict:
    os.environ.pop("OMP_WAIT_POLICY", None)
    if passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    server = LocalServer(model, threads=threads, n_ctx=n_ctx, omp_passive=passive)
    with server:
        chat = OpenAIChat(server.base_url, model=server.alias, temperature=0.3, seed=42, max_retries=0)
        one_run(chat, 0, 8)  # warm-up
        rows = [one_run(chat, i, max_tokens) for i in range(1, runs + 1)]
        chat.close()
    os.environ.pop("OMP_WAIT_POLICY", None)
    return {"load": server.load_seconds, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=4, help="generations per setting and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=8192)
    args = parser.parse_args()

    config = load_config()
    start = time.perf_counter()
    model = assemble_model(config.cache)
    print(f"model ready in {time.perf_counter() - start:.1f} s: {model}  (cpus: {os.cpu_count()})")
    settings = [(t, p) for t in args.threads for p in (False, True)]
    results = {s: {"load": [], "rows": []} for s in settings}
    for round_ in range(args.rounds):
        for threads, passive in settings:
            out = bench(model, threads, passive, args.runs, args.max_tokens, args.n_ctx)
            results[(threads, passive)]["load"].append(out["load"])
            results[(threads, passive)]["rows"].extend(out["rows"])
            gens = ", ".join(f"{r['gen_tps']:.1f}" for r in out["rows"])
            print(f"  round {round_ + 1} threads={threads} passive={passive}: gen tok/s [{gens}]", flush=True)

    print("\n| n_threads | OMP_WAIT_POLICY | load s | prompt tok/s (median) | gen tok/s median | gen min–max "
          "| overall tok/s |")
    print("|---|---|---|---|---|---|---|")
    best = None
    for (threads, passive), res in results.items():
        gen = [r["gen_tps"] for r in res["rows"]]
        # completion tokens over wall time of all calls: one stalled call drags this down, unlike the median
        overall = sum(r["tokens"] for r in res["rows"]) / sum(r["seconds"] for r in res["rows"])
        print(f"| {threads} | {'PASSIVE' if passive else '(unset)'} | {statistics.median(res['load']):.1f} "
              f"| {statistics.median(r['prompt_tps'] for r in res['rows']):.0f} | {statistics.median(gen):.1f} "
              f"| {min(gen):.1f}–{max(gen):.1f} | {overall:.1f} |")
        if best is None or overall > best[0]:
            best = (overall, threads, passive)
    print(f"\nbest overall: n_threads={best[1]}, OMP_WAIT_POLICY={'PASSIVE' if best[2] else 'unset'} "
          f"({best[0]:.1f} tok/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
