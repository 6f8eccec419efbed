"""Precision and recall of the genre audit per kind on the labelled set, and its speed.

    python -m evals.bench_audit            # per-kind figures, corpus findings, misses and false alarms, timing

The labelled set is tests/data/audit_set.yaml plus the corpus's own items (clean by definition, audited
without a note). A section counts once per kind: predicted when the audit reports that kind for it.
Speed: the audit of a draft of about 3,000 characters (clean sections of the set joined into numbered
items), in process, after the one-off vocabulary build, median of repeated runs.
"""

import argparse
import statistics
import time
from pathlib import Path

import yaml

from pipeline.checks.audit import KINDS, Auditor
from pipeline.corpus.samples import load_corpus

ROOT = Path(__file__).resolve().parent.parent
SET = ROOT / "tests" / "data" / "audit_set.yaml"
CN = "一二三四五六七八九十"


def load_cases(path: Path = SET) -> tuple[dict[str, str], list[dict]]:
    """(notes by name, cases): the file's sections and the corpus items (note None, no kinds)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases = [dict(case, others=case.get("others") or []) for case in data["sections"]]
    cases += [{"id": item.id, "note": None, "heading": item.heading, "body": item.body, "kinds": [], "others": []}
              for item in load_corpus().items]
    return data["notes"], cases


def predict(notes: dict[str, str], cases: list[dict]) -> dict[str, list]:
    """case id -> findings, one Auditor per note."""
    auditors = {name: Auditor(note_text=text) for name, text in notes.items()} | {None: Auditor()}
    return {c["id"]: auditors[c["note"]].section(c["heading"], c["body"], c["others"]) for c in cases}


def score(cases: list[dict], found: dict[str, list]) -> dict[str, dict]:
    """kind -> {"tp", "fp", "fn", "precision", "recall", "fp_ids", "fn_ids"} over sections."""
    out = {}
    for kind in KINDS:
        tp = fp = fn = 0
        fp_ids, fn_ids = [], []
        for c in cases:
            got, want = any(f.kind == kind for f in found[c["id"]]), kind in c["kinds"]
            tp += got and want
            if got and not want:
                fp += 1
                fp_ids.append(c["id"])
            if want and not got:
                fn += 1
                fn_ids.append(c["id"])
        out[kind] = {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else 1.0,
                     "recall": tp / (tp + fn) if tp + fn else 1.0, "fp_ids": fp_ids, "fn_ids": fn_ids}
    return out


def corpus_drafts() -> dict[str, list]:
    """sample id -> findings of the sample audited as one draft (no note)."""
    auditor = Auditor()
    return {s.id: auditor.text("\n".join(f"（{CN[k % 10]}）{it.heading}。{it.body}" for k, it in enumerate(s.items))).findings()
            for s in load_corpus().samples}


def long_draft(cases: list[dict], chars: int = 3000) -> str:
    """Clean sections joined into a numbered draft of about `chars` characters."""
    parts, total = [], 0
    for c in (c for c in cases if c["id"].startswith("clean-") and c["note"] == "agri" or c["note"] is None):
        if total >= chars:
            break
        parts.append(f"（{CN[len(parts) % 10]}）{c['heading']}。{c['body']}")
        total += len(parts[-1])
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs of the 3,000-character audit")
    args = parser.parse_args()
    notes, cases = load_cases()
    started = time.perf_counter()
    found = predict(notes, cases)
    elapsed = time.perf_counter() - started
    figures = score(cases, found)
    corpus = [c for c in cases if c["note"] is None]
    print(f"labelled set: {len(cases)} sections ({len(corpus)} corpus items, "
          f"{sum('clean-' in c['id'] for c in cases)} tailored clean, {sum(bool(c['kinds']) for c in cases)} bad)")
    print(f"{'kind':<12}{'cases':>6}{'tp':>5}{'fp':>5}{'fn':>5}{'precision':>11}{'recall':>8}")
    for kind, f in figures.items():
        print(f"{kind:<12}{f['tp'] + f['fn']:>6}{f['tp']:>5}{f['fp']:>5}{f['fn']:>5}{f['precision']:>11.2f}{f['recall']:>8.2f}")
    held = [c for c in cases if c["id"].startswith("held")]
    if held:
        h = score(held, found)
        wrong = [k for k, f in h.items() if f["fp"] or f["fn"]]
        print(f"held out ({len(held)} sections written after calibration): "
              + ("all right" if not wrong else "; ".join(f"{k} fp {h[k]['fp']} fn {h[k]['fn']}" for k in wrong)))
    corpus_findings = [(c["id"], f) for c in corpus for f in found[c["id"]]]
    print(f"corpus items: {len(corpus_findings)} finding(s) on {len(corpus)} items")
    whole = corpus_drafts()
    print(f"corpus samples audited as whole drafts (repeats across items too): {sum(len(f) for f in whole.values())} finding(s)")
    for cid, f in corpus_findings:
        print(f"  {cid} {f.kind}: {f.text[:40]}")
    for kind, f in figures.items():
        for cid in f["fp_ids"]:
            print(f"  false alarm {kind}: {cid}: " + "；".join(x.text[:30] for x in found[cid] if x.kind == kind))
        for cid in f["fn_ids"]:
            print(f"  missed {kind}: {cid}")
    draft = long_draft(cases)
    auditor = Auditor(note_text=notes["agri"])
    times, cpu = [], []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        auditor.text(draft)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(f"audit of the whole set: {elapsed * 1000:.0f} ms (vocabulary build included)")
    print(f"audit of a {len(draft)}-character draft: median {statistics.median(times) * 1000:.1f} ms wall, "
          f"{statistics.median(cpu) * 1000:.1f} ms CPU, max {max(times) * 1000:.1f} ms wall over {args.runs} runs "
          f"(target < 50 ms; wall time rises when other processes share the cores)")


if __name__ == "__main__":
    main()
