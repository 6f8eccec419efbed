"""Moves benchmark: how often the model fills each frame usably, as first written.

    python -m evals.bench_moves                  # every frame of corpus/frames.yaml on 8 problems of the eval cases
    python -m evals.bench_moves --problems 4 --frames how_why importance --show

Each (problem, frame) pair gets one move call exactly as a draft makes it (pipeline/moves.py write_moves: the
prompt, the grammar, the checks), with the problem's best dimension's first root as the section's thinking and
no other section around it. Prints, per frame, the fills clean as first written and why the others failed;
with --show, every fill. A frame this model cannot fill usably is dropped from corpus/frames.yaml: the
figures that decided it are in the README's engineer part.
"""

import argparse
import threading
import time
from collections import Counter
from pathlib import Path

import yaml

from pipeline.checks.audit import Auditor
from pipeline.drafting.links import link_prefix
from pipeline.config import load_config
from pipeline.checks.copycheck import CopyIndex
from pipeline.corpus.samples import DimensionTagger, load_corpus
from pipeline.model.client import make_chat
from pipeline.drafting.moves import load_frames, write_moves
from pipeline.note.reader import parse_note

CASES = Path(__file__).resolve().parent / "cases"


class _Run:
    """What write_moves needs of a draft run: the model call, the settings, a cancel flag and the note."""

    def __init__(self, chat, config, note: str):
        self.chat, self.config, self.note, self.cancel = chat, config, note, threading.Event()

    def call(self, step, messages, **kwargs):
        return self.chat.complete(messages, cancel=self.cancel, **kwargs)


def problems(count: int) -> list[tuple[str, dict, dict]]:
    """(note, problem, note info) for the first problem of `count` eval cases, spread over the case list."""
    paths = sorted(CASES.glob("*.yaml"))
    picked = paths[:: max(1, len(paths) // count)][:count]
    out = []
    for path in picked:
        note = parse_note(yaml.safe_load(path.read_text(encoding="utf-8"))["note"])
        if note.problems:
            p = note.problems[0]
            out.append((note.text, {"title": p.title, "text": p.text},
                        {"unit": note.unit, "meeting": note.meeting, "subject": note.subject}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--frames", nargs="*", help="frame ids (default: every frame the corpus holds)")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()
    config = load_config()
    frames = [f for f in load_frames(load_corpus(config.corpus).items) if not args.frames or f.id in args.frames]
    tagger, index = DimensionTagger(), CopyIndex.load(config.corpus, config.cache / "copyindex")
    chat = make_chat(config)
    tally: dict[str, Counter] = {f.id: Counter() for f in frames}
    start = time.perf_counter()
    try:
        for note, problem, info in problems(args.problems):
            dimension = tagger.tag(problem["title"], problem["text"])[0]
            root = tagger.roots[dimension][0]
            auditor = Auditor(config.corpus, note)
            links = f"{link_prefix(problem['text'])}，根子在于{info['subject']}{root}。"
            run = _Run(chat, config, note)
            for frame in frames:
                moves = write_moves(run, 1, [frame], [problem], [root], root, links, info, auditor, index, [], [], most=1)
                if not moves:
                    tally[frame.id]["not for this problem"] += 1  # no object, or a neglect frame after an excess
                    continue
                move = moves[0]
                first = move["first_failures"]
                tally[frame.id]["clean"] += not first
                tally[frame.id].update(first)
                tally[frame.id]["tried"] += 1
                if args.show:
                    first_try = move["attempts"][0] if move["attempts"] else {}
                    shown = first_try.get("text") or first_try.get("error") or move["text"] or "（不调用模型）"
                    print(f"{frame.id:12} {'ok ' if not first else '✗  '}{shown}  {'、'.join(first)}")
    finally:
        chat.close()
    print(f"\n{'frame':12} clean first  why not (first written)")
    total = Counter()
    for fid, c in tally.items():
        total.update(c)
        why = "  ".join(f"{k} {v}" for k, v in c.most_common() if k not in ("clean", "tried"))
        print(f"{fid:12} {c['clean']:3d}/{c['tried']:<3d} {c['clean'] / max(1, c['tried']):5.0%}  {why}")
    print(f"{'all':12} {total['clean']:3d}/{total['tried']:<3d} {total['clean'] / max(1, total['tried']):5.0%}   "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
