"""Drafting benchmark: wall time, model calls, tokens and the share of time in each chain step, per draft.

    python -m evals.bench_draft                      # the embedded model, the example note and two eval cases
    python -m evals.bench_draft --notes a.txt b.txt  # other notes
    POXI_BASE_URL=… python -m evals.bench_draft      # another endpoint

Targets (issue 4): a ~1,500-character draft in under 3 minutes with the embedded model on 2 cores, and
prompt tokens under 3x completion tokens. Every call goes to the model (no response cache). The server
start (model load) is timed separately, since a warm `poxi web` or `poxi serve` pays it once.
"""

import argparse
import os
import time
from pathlib import Path

import yaml

from pipeline.chain import draft
from pipeline.config import load_config
from pipeline.llm import make_chat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_NOTES = [ROOT / "evals" / "example-note.txt", ROOT / "evals" / "cases" / "county-hospital.yaml",
                 ROOT / "evals" / "cases" / "township-party-committee.yaml"]


def note_text(path: Path) -> str:
    if path.suffix == ".yaml":
        return yaml.safe_load(path.read_text(encoding="utf-8"))["note"]
    return path.read_text(encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", nargs="*", type=Path, default=DEFAULT_NOTES)
    args = parser.parse_args()
    config = load_config()
    chat = make_chat(config)
    start = time.perf_counter()
    if getattr(chat, "server", None) is not None:
        chat.server.start()
    print(f"model: {chat.name}  server start: {time.perf_counter() - start:.1f} s  load average: {os.getloadavg()[0]:.2f}")
    rows = []
    try:
        for path in args.notes:
            result = draft(note_text(path), config, chat=chat)
            s = result.stats
            chars = len("".join(result.text.split()))
            rows.append((path.stem, chars, s, result.passed))
            shares = "  ".join(f"{k} {v / s['seconds']:.0%}" for k, v in sorted(s["steps"].items(), key=lambda kv: -kv[1]))
            print(f"\n{path.stem}: {chars} chars, {s['seconds']:.1f} s, {s['calls']} calls, prompt {s['prompt_tokens']} / "
                  f"completion {s['completion_tokens']} tokens (ratio {s['prompt_tokens'] / max(1, s['completion_tokens']):.2f}), "
                  f"checks {'passed' if result.passed else 'failed'}\n  time by step: {shares}")
    finally:
        chat.close()
    n = len(rows)
    mean = lambda key: sum(r[2][key] for r in rows) / n  # noqa: E731
    print(f"\nmean over {n} drafts: {sum(r[1] for r in rows) / n:.0f} chars, {mean('seconds'):.1f} s "
          f"({mean('seconds') / (sum(r[1] for r in rows) / n) * 1500:.1f} s per 1,500 chars), {mean('calls'):.1f} calls, "
          f"prompt/completion {mean('prompt_tokens') / max(1, mean('completion_tokens')):.2f}, "
          f"passed {sum(r[3] for r in rows)}/{n}")


if __name__ == "__main__":
    main()
