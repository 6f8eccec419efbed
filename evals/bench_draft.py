"""Drafting benchmark: wall time, model calls, tokens and the share of time in each chain step, per draft.

    python -m evals.bench_draft                      # the embedded model, the example note and two eval cases
    python -m evals.bench_draft --notes a.txt b.txt  # other notes
    python -m evals.bench_draft --ablation           # moves: frames of retrieved items vs random items vs none
    POXI_BASE_URL=… python -m evals.bench_draft      # another endpoint

Targets: a ~1,500-character draft in a median of 3 minutes (p95 4) with the embedded model on 2 cores,
prompt tokens under 3x completion tokens, and >= 90% of sections audit-clean as the model first writes
them (before regeneration or replacement). The ablation runs every note once per mode (a section's moves
from the frames of the corpus items retrieved for its problems, of random items, or no moves) and prints per
mode: sections and moves clean as first written, findings left after repair, note-problem coverage, the
model's own share of the draft (自写占比), the median section length, and how close each kept move is to its
section's problems (cosine of the configured embedder's vectors). Every call goes to the model (no response
cache). The server
start (model load) is timed separately, since a warm `poxi web` or `poxi serve` pays it once.
"""

import argparse
import os
import time
from pathlib import Path

import yaml

from pipeline.drafting.chain import draft
from pipeline.config import load_config
from pipeline.corpus.embed import make_embedder
from pipeline.evaluation.score import own_share, section_median
from pipeline.model.client import make_chat
from pipeline.note.reader import parse_note

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
    parser.add_argument("--ablation", action="store_true", help="run each note with moves from retrieved, random and no frames")
    parser.add_argument("--show", action="store_true", help="print each draft's text too")
    args = parser.parse_args()
    modes = ["retrieved", "random", "none"] if args.ablation else ["retrieved"]  # "retrieved": what poxi draft does
    config = load_config()
    chat = make_chat(config)
    embedder = make_embedder(config.embedder, threads=config.threads, cache=config.cache)
    start = time.perf_counter()
    if getattr(chat, "server", None) is not None:
        chat.server.start()
    print(f"model: {chat.name}  server start: {time.perf_counter() - start:.1f} s  load average: {os.getloadavg()[0]:.2f}")
    rows = []
    try:
        for mode in modes:
            for path in args.notes:
                result = draft(note_text(path), config, chat=chat, angles=mode)
                s = result.stats
                chars = len("".join(result.text.split()))
                rows.append((path.stem, chars, s, result.passed, mode, section_figures(result, note_text(path), embedder)))
                shares = "  ".join(f"{k} {v / s['seconds']:.0%}" for k, v in sorted(s["steps"].items(), key=lambda kv: -kv[1]))
                print(f"\n{path.stem} [{mode}]: {chars} chars, {s['seconds']:.1f} s, {s['calls']} calls, prompt {s['prompt_tokens']} / "
                      f"completion {s['completion_tokens']} tokens (ratio {s['prompt_tokens'] / max(1, s['completion_tokens']):.2f}), "
                      f"checks {'passed' if result.passed else 'failed'}\n  time by step: {shares}\n  {rows[-1][5]}")
                if args.show:
                    print(result.text)
    finally:
        chat.close()
    if args.ablation:
        print("\nmoves      sections  clean first  moves kept/clean first  findings after  coverage  own share  section median  move~problem")
        for mode in modes:
            figs = [r[5] for r in rows if r[4] == mode]
            total, moves = sum(f["sections"] for f in figs), sum(f["moves"] for f in figs)
            sims = [x for f in figs for x in f["similarity"]]
            print(f"{mode:10} {total:8d}  {sum(f['clean_first'] for f in figs) / max(1, total):11.0%}  "
                  f"{sum(f['kept'] for f in figs):5d}/{moves:<3d} {sum(f['moves_clean'] for f in figs) / max(1, moves):12.0%}  "
                  f"{sum(f['findings'] for f in figs):14d}  {sum(f['covered'] for f in figs) / max(1, sum(f['problems'] for f in figs)):8.0%}  "
                  f"{sum(f['own'] for f in figs) / len(figs):9.0%}  {sorted(f['median'] for f in figs)[len(figs) // 2]:14d}  "
                  f"{(sum(sims) / len(sims)) if sims else float('nan'):12.3f}")
        rows = [r for r in rows if r[4] == "retrieved"]
    n = len(rows)
    seconds = sorted(r[2]["seconds"] for r in rows)
    print(f"median {seconds[n // 2]:.1f} s, slowest {seconds[-1]:.1f} s per draft")
    mean = lambda key: sum(r[2][key] for r in rows) / n  # noqa: E731
    print(f"\nmean over {n} drafts: {sum(r[1] for r in rows) / n:.0f} chars, {mean('seconds'):.1f} s "
          f"({mean('seconds') / (sum(r[1] for r in rows) / n) * 1500:.1f} s per 1,500 chars), {mean('calls'):.1f} calls, "
          f"prompt/completion {mean('prompt_tokens') / max(1, mean('completion_tokens')):.2f}, "
          f"passed {sum(r[3] for r in rows)}/{n}")


def section_figures(result, note: str, embedder) -> dict:
    """Sections and moves clean as first written, audit findings left in the final draft, note problems
    covered, the model's own share, the median section, and each kept move's cosine to its section's problems."""
    audit = result.check.get("audit") or {}
    problems = result.check.get("structure", {}).get("note_problems") or []
    parsed = [p.text for p in parse_note(note).problems]
    sims = []
    for section in result.sections:
        kept = [m["text"] for m in section.get("moves", []) if m["text"]]
        own = [parsed[n - 1] for n in section["problems"] if n <= len(parsed)] or parsed
        if kept and own:
            vectors = embedder.embed(kept + ["；".join(own)], kind="query")
            sims += [float(vectors[k] @ vectors[-1]) for k in range(len(kept))]
    moves = [m for s in result.sections for m in s.get("moves", [])]
    return {"sections": len(result.sections),
            "clean_first": len(result.sections) - result.stats["first_failed_sections"],
            "moves": len(moves), "kept": sum(1 for m in moves if m["text"]),
            "moves_clean": sum(1 for m in moves if not m["first_failures"]),
            "findings": sum((audit.get("counts") or {}).values()),
            "covered": sum(1 for p in problems if p["covered"]), "problems": len(problems),
            "own": own_share(result.text, note), "median": section_median(result.text), "similarity": sims}


if __name__ == "__main__":
    main()
