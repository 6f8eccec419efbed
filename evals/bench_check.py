"""Benchmark and calibration figures for the copy check (`poxi check`).

    python -m evals.bench_check --labelled   # precision / recall on tests/data/copy_cases.yaml, per style (copied:
                                             # recall; originals: false positives; quotations: reported as such),
                                             # the sentence rule's calibration gaps, time for the whole set
    python -m evals.bench_check              # build / check time and memory, seed corpus and 10,000 synthetic docs,
                                             # against a naive all-pairs difflib baseline in the same run

The synthetic corpus is made of random 2-7 character fragments of the seed text (so it shares the
seed's short n-grams, as real samples share stock phrases) joined into sentences, plus the seed items
themselves so copies are still found. The naive baseline compares every draft sentence with every
corpus sentence (difflib longest match); on 10,000 documents it is timed on the first 100 and scaled.
"""

import argparse
import random
import resource
import time
import tracemalloc
from pathlib import Path

import yaml

from pipeline.checks import copycheck
from pipeline.checks.copycheck import CopyIndex, compare, load_terms, sentence_spans
from pipeline.corpus.samples import load_corpus

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def labelled() -> None:
    cases = yaml.safe_load((DATA / "copy_cases.yaml").read_text(encoding="utf-8"))["cases"]
    index = CopyIndex.from_corpus(load_corpus())
    tp = fp = fn = tn = 0
    styles: dict[tuple[str, str], list[int]] = {}  # (label, style) -> [cases, flagged, quotations reported]
    figures = {"copied": [], "original": [], "quotation": []}
    started = time.perf_counter()
    for case in cases:
        flagged = bool(index.check(case["text"]))
        quoted = bool(index.quotations(case["text"])) if hasattr(index, "quotations") else False
        copied = case["label"] == "copied"
        tp, fp = tp + (flagged and copied), fp + (flagged and not copied)
        fn, tn = fn + (copied and not flagged), tn + (not copied and not flagged)
        row = styles.setdefault((case["label"], case["style"]), [0, 0, 0])
        row[0], row[1], row[2] = row[0] + 1, row[1] + flagged, row[2] + quoted
        norm, _ = index.normalise(case["text"])
        best = (0.0, 0)
        for sid in index.candidates(norm):
            longest, runs = compare(norm, index.normalise(index.sentences[sid])[0])
            best = max(best, (sum(b - a for a, b in runs) / len(norm), longest))
        figures[case["label"]].append((case["style"], *best))
    elapsed = time.perf_counter() - started
    print(f"cases: {len(cases)} ({tp + fn} copied, {fp + tn} original or quotation)")
    print(f"precision {tp / max(tp + fp, 1):.3f}  recall {tp / max(tp + fn, 1):.3f}  (tp {tp} fp {fp} fn {fn} tn {tn})")
    print("per style (copied: recall; original: false positives; quotation: flagged as copied, reported as quotation):")
    for (label, style), (n, flagged, quoted) in styles.items():
        if label == "copied":
            print(f"  copied    {style:<12} recall {flagged / n:.2f} ({flagged}/{n})")
        elif label == "original":
            print(f"  original  {style:<12} false positives {flagged}/{n}")
        else:
            print(f"  quotation {style:<12} flagged {flagged}/{n}, reported as quotation {quoted}/{n}")
    orig, copies = figures["original"], figures["copied"]
    print("sentence rule, best single source sentence (what the window checks add to is not shown):")
    print("  originals: max containment %.2f, max longest run %d" % (max(c for _, c, _ in orig), max(n for _, _, n in orig)))
    print("  copies:    min containment %.2f, min longest run %d" % (min(c for _, c, _ in copies), min(n for _, _, n in copies)))
    print(f"  rule: longest >= {copycheck.LONGEST} or (containment >= {copycheck.CONTAINMENT} and longest >= {copycheck.MIN_LONGEST})")
    print(f"time: {elapsed * 1000:.0f} ms for {len(cases)} cases (check, quotations and the figures above)")


def make_draft(chars: int = 3000) -> str:
    parts = [(DATA / "drafts" / name).read_text(encoding="utf-8") for name in ("good_paren.txt", "good_shi.md")]
    cases = yaml.safe_load((DATA / "copy_cases.yaml").read_text(encoding="utf-8"))["cases"]
    parts += [c["text"] for c in cases[:: 3]]
    text, k = "", 0
    while len(text) < chars:
        text += parts[k % len(parts)] + "\n"
        k += 1
    return text[:chars]


def synthetic_docs(corpus, n: int, size: int, seed: int = 7):
    """n documents of about `size` characters built from random fragments of the seed text."""
    rng = random.Random(seed)
    source = "".join(item.text for item in corpus.items)
    docs = [(item.id, item.text) for item in corpus.items]
    for d in range(n):
        out, length = [], 0
        while length < size:
            sentence = "".join(source[p : p + rng.randint(2, 7)] for p in (rng.randrange(len(source) - 8) for _ in range(6)))
            out.append(sentence + "。")
            length += len(sentence) + 1
        docs.append((f"synthetic/{d:05d}/1", "".join(out)))
    return docs


def naive(draft: str, docs) -> int:
    """All pairs: every draft sentence against every corpus sentence with difflib; returns sentences flagged."""
    from difflib import SequenceMatcher

    norm = copycheck.Normaliser(load_terms())
    source = [norm(s)[0] for _, text in docs for _, _, s in sentence_spans(text)]
    flagged = 0
    for _, _, sentence in sentence_spans(draft):
        a = norm(sentence)[0]
        matcher = SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(a)
        for b in source:
            matcher.set_seq1(b)
            if matcher.find_longest_match(0, len(b), 0, len(a)).size >= copycheck.LONGEST:
                flagged += 1
                break
    return flagged


def timed(fn, *args, repeat: int = 1):
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, value


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(n_docs: int, doc_chars: int, naive_docs: int) -> None:
    corpus = load_corpus()
    draft = make_draft(3000)
    half = make_draft(1500)
    print(f"draft: {len(draft)} chars, {len(sentence_spans(draft))} sentences")

    seed_docs = [(item.id, item.text) for item in corpus.items]
    tracemalloc.start()
    build_s, index = timed(CopyIndex.build, seed_docs)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    check_s, flags = timed(index.check, draft, repeat=5)
    naive_s, naive_flags = timed(naive, draft, seed_docs)
    print(f"[seed] {len(seed_docs)} items, {sum(len(t) for _, t in seed_docs)} chars: build {build_s * 1000:.0f} ms "
          f"(peak {peak:.1f} MiB traced), {len(index.hashes)} fingerprints; check {check_s * 1000:.1f} ms, "
          f"{len(flags)} flagged; naive {naive_s * 1000:.0f} ms, {naive_flags} flagged; naive/index {naive_s / check_s:.0f}x")

    gen_s, docs = timed(synthetic_docs, corpus, n_docs, doc_chars)
    total = sum(len(t) for _, t in docs)
    before = rss_mb()
    build_s, index = timed(CopyIndex.build, docs)
    grown = rss_mb() - before
    check_s, flags = timed(index.check, draft, repeat=5)
    half_s, _ = timed(index.check, half, repeat=5)
    size_mb = (index.hashes.nbytes + index.owners.nbytes) / 2**20
    naive_part_s, _ = timed(naive, draft, docs[len(seed_docs) : len(seed_docs) + naive_docs])
    naive_s = naive_part_s * len(docs) / naive_docs
    print(f"[synthetic] {len(docs)} docs, {total / 1e6:.1f} M chars (generated in {gen_s:.0f} s): build {build_s:.1f} s, "
          f"max RSS grew {grown:.0f} MiB, fingerprint arrays {size_mb:.0f} MiB ({len(index.hashes)} fingerprints)")
    print(f"[synthetic] check 3,000-char draft {check_s * 1000:.1f} ms ({len(flags)} flagged); "
          f"1,500-char draft {half_s * 1000:.1f} ms")
    print(f"[synthetic] naive all-pairs on {naive_docs} docs {naive_part_s:.2f} s -> scaled to {len(docs)} docs "
          f"{naive_s:.0f} s; naive/index {naive_s / check_s:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labelled", action="store_true", help="precision / recall on the labelled cases only")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--doc-chars", type=int, default=2_000)
    parser.add_argument("--naive-docs", type=int, default=100)
    args = parser.parse_args()
    if args.labelled:
        labelled()
    else:
        bench(args.docs, args.doc_chars, args.naive_docs)


if __name__ == "__main__":
    main()
