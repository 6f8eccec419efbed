"""Roots that fit: how well each way of choosing a problem's thinking (思想根源) fits evals/root_fit.yaml.

    python -m evals.bench_roots                # every method without the model
    python -m evals.bench_roots --model 2      # and the embedded model's choice among the top 2 (slow: nice -n 10)
    python -m evals.bench_roots --weights      # the dimension keywords' weight beside a root's own cues

Per method: root fit (the root a link would name is one the labelled set accepts for the problem), dimension
accuracy (the dimension it chose is one of the problem's), over all problems and per `round` of the set (see
its header): round 3 was written after the cues were frozen, the held-out figure; the labelled examples never
vote for their own problem. A method that leaves the choice within a dimension open (roots dealt as the chain
did before pipeline/drafting/roots.py) is scored by the share of the offered roots that fit: what a pick at random gets.
Methods:
- tagger, dealt: the dimension keywords' best dimension, its roots dealt out (plan.section_roots);
- embed nearest root: the problem (query) against every root (passage) with the project's embedder;
- tagger + embed: the tagger's dimension, its root nearest the problem;
- retrieved dims: the dimensions of the 5 corpus items retrieve.py ranks first for the problem (votes by rank): by
  keyword search (BM25), and with --hybrid by its hybrid search (syncs an index); roots dealt, or ranked within it;
- cues only, examples only, cues + examples: pipeline/roots.RootRanker's best root (the last is what ships), and
  with a third signal, the labelled examples nearest by embedding;
- shortlist k: whether every root of the ranker's top k fits (no choice of the model can miss), a random pick
  among them, and whether any fits (a perfect chooser);
- model (--model): the embedded model's choice under the chain's grammar (the section prompt, the link's opening,
  the offered roots as the only way to go on), among the dealt roots (as before) and among the ranker's top 3
  and top 2. The model is asked only where the offer mixes fitting and unfitting roots; elsewhere the fit is known.
"""

import argparse
import os
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.drafting.links import link_openings, link_prefix  # noqa: E402
from pipeline.drafting.links import literal as _literal  # noqa: E402
from pipeline.drafting.loop import parse_json  # noqa: E402
from pipeline.drafting.plan import section_roots  # noqa: E402
from pipeline.corpus.samples import DimensionTagger  # noqa: E402
from pipeline.drafting.roots import RootRanker  # noqa: E402

SET = ROOT / "evals" / "root_fit.yaml"


def load_set(path: Path = SET) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["problems"]


def subject_of(unit: str) -> str:
    return "我" if unit.startswith("我") else "支部" if "支部" in unit else "班子"


class Table:
    def __init__(self, problems: list[dict]):
        self.problems, self.rows = problems, []

    def add(self, name: str, fits: list[float], dims: list[bool | None], note: str = "") -> None:
        """fits: per problem the fit (1/0, or a share for a random pick); dims: dimension right (None: none chosen)."""
        def pct(values):
            values = [v for v in values if v is not None]
            return f"{100 * sum(values) / len(values):5.1f}" if values else "    -"
        first = [k for k, p in enumerate(self.problems) if not p.get("round")]
        parts = [[fits[k] for k in first if k % 2], [fits[k] for k in first if not k % 2]] + [
            [f for f, p in zip(fits, self.problems) if p.get("round") == r] for r in (2, 3)]
        self.rows.append((name, pct(fits), *map(pct, parts), pct(dims), note))
        print(f"  {name}: fit {pct(fits)}%", flush=True)

    def print(self) -> None:
        first = [k for k, p in enumerate(self.problems) if not p.get("round")]
        n = [sum(1 for k in first if k % 2), sum(1 for k in first if not k % 2)] + [
            sum(1 for p in self.problems if p.get("round") == r) for r in (2, 3)]
        print(f"\nroot fit % over all {len(self.problems)} problems; round 1 even-numbered ({n[0]}, the cues adjusted on "
              f"them) and odd ({n[1]}); round 2 ({n[2]}, cues broadened after); round 3 ({n[3]}, held out)")
        print(f"{'method':44} {'fit':>6} {'r1 even':>8} {'r1 odd':>7} {'r2':>6} {'r3':>6} {'dim acc':>8}")
        for name, fit, even, odd, r2, r3, dim, note in self.rows:
            print(f"{name:44} {fit:>6} {even:>8} {odd:>7} {r2:>6} {r3:>6} {dim:>8}  {note}")


def tagger_dimension(tagger: DimensionTagger, text: str) -> str:
    scores = tagger.scores(text)
    best = max(tagger.names, key=lambda d: (scores[d], -tagger.names.index(d)))
    return best if scores[best] else tagger.always[0]  # no keyword: the chain put such a problem in any section


def dealt(tagger: DimensionTagger, dimension: str, text: str) -> list[str]:
    """The roots the chain offered one link before pipeline/roots.py: its dimension's, turned by the note."""
    return section_roots(tagger.roots[dimension], 1, turn=zlib.crc32(text.encode("utf-8")))[0]


def share(offer: list[str], accept: list[str]) -> float:
    return sum(r in accept for r in offer) / len(offer)


def embed_scores(embedder, problems: list[dict], roots: list[str]) -> np.ndarray:
    """problem x root cosine similarity."""
    q = embedder.embed([p["text"] for p in problems], kind="query")
    r = embedder.embed(roots, kind="passage")
    return q @ r.T


def keyword_dimensions(problems: list[dict]) -> list[str | None]:
    """The dimensions of the 5 corpus items retrieve.py's keyword search (BM25 over jieba tokens) ranks first for
    each problem, voted by rank: the half of hybrid search that needs no index."""
    from pipeline.corpus.samples import load_corpus
    from pipeline.corpus.retrieve import BM25
    from pipeline.corpus.store import tokenize

    items = {item.id: item for item in load_corpus().items}
    bm25 = BM25({i: tokenize(item.text) for i, item in items.items()})
    out = []
    for p in problems:
        scores = bm25.scores(tokenize(p["text"]))
        votes = Counter()
        for rank, k in enumerate(np.argsort(-scores)[:5]):
            if scores[k] > 0:
                votes[items[bm25.ids[k]].dimensions[0]] += 1 / (rank + 1)
        out.append(votes.most_common(1)[0][0] if votes else None)
    return out


def retrieved_dimensions(problems: list[dict], embedder) -> list[str | None]:
    from pipeline.config import load_config
    from pipeline.corpus.retrieve import Retriever
    from pipeline.corpus.store import Store

    home = tempfile.mkdtemp(prefix="poxi-bench-roots-")
    os.environ["POXI_HOME"] = home
    config = load_config({"home": home}) if "home" in load_config().__dataclass_fields__ else load_config()
    Store(config).sync(embedder)
    retriever = Retriever(config, embedder=embedder)
    out = []
    for p in problems:
        votes = Counter()
        for rank, hit in enumerate(retriever.search(p["text"], 5)):
            for d in hit.dimension[:1]:
                votes[d] += 1 / (rank + 1)
        out.append(votes.most_common(1)[0][0] if votes else None)
    return out


def model_choices(problems: list[dict], offers: list[list[str]], tagger: DimensionTagger, dimensions: list[str]) -> list[str]:
    """The embedded model's root among each offer, asked as the chain asks a link (only where the offer mixes
    roots that fit and roots that do not; elsewhere the offer's first root stands in)."""
    from pipeline.config import load_config
    from pipeline.model.client import make_chat
    from pipeline.prompts import load_prompt

    config = load_config()
    chat = make_chat(config)
    prompt = load_prompt("section", config.prompts_dir)
    out, calls, start = [], 0, time.perf_counter()
    try:
        for p, offer, dimension in zip(problems, offers, dimensions):
            fits = {r in p["accept"] for r in offer}
            if len(fits) == 1:
                out.append(offer[0])
                continue
            subject = subject_of(p["unit"])
            opening = link_openings([link_prefix(p["text"])], 1, subject)[0]
            messages = prompt.render(unit=p["unit"], year="本", meeting="民主生活会", subject=subject,
                                     voice="individual" if subject == "我" else "collective",
                                     dimension=dimension.replace("/", "和"), problems=[opening], roots=[offer],
                                     listed=not chat.enforces_schema, angles=[])
            # the link's opening and a root, nothing after it: the choice the chain's grammar leaves the model
            pattern = f"^({_literal(opening)})({'|'.join(map(_literal, offer))})$"
            schema = {"type": "object", "additionalProperties": False, "required": ["联系"],
                      "properties": {"联系": {"type": "array", "prefixItems": [{"type": "string", "pattern": pattern}],
                                            "minItems": 1, "maxItems": 1}}}
            reply = chat.complete(messages, schema=schema, max_tokens=40 + 2 * len(opening))
            calls += 1
            try:
                link = parse_json(reply.text)["联系"][0]
                out.append(next(r for r in sorted(offer, key=len, reverse=True) if link.endswith(r)))
            except (ValueError, KeyError, IndexError, StopIteration):
                out.append(offer[0])
    finally:
        chat.close()
    print(f"  ({calls} model calls, {time.perf_counter() - start:.0f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="*", choices=["dealt", "3", "2"], default=None,
                        help="also the embedded model's choice among these offers (slow; all three when none named)")
    parser.add_argument("--no-embed", action="store_true", help="skip the embedder and retrieval methods")
    parser.add_argument("--weights", action="store_true", help="sweep RootRanker's dimension weight")
    parser.add_argument("--misses", action="store_true", help="list the problems the shipped ranker misses")
    parser.add_argument("--rounds", nargs="*", type=int, help="only the problems of these rounds (1 2 3)")
    parser.add_argument("--hybrid", action="store_true", help="also retrieve.py's hybrid search (syncs an index: slow)")
    args = parser.parse_args()
    problems, tagger = load_set(), DimensionTagger()
    if args.rounds:
        problems = [p for p in problems if p.get("round", 1) in args.rounds]
    table = Table(problems)
    dim_of = {r: d for d, rs in tagger.roots.items() for r in rs}
    all_roots = list(dim_of)

    tag_dims = [tagger_dimension(tagger, p["text"]) for p in problems]
    before = [dealt(tagger, d, p["text"]) for d, p in zip(tag_dims, problems)]
    table.add("tagger, dealt (before)", [share(o, p["accept"]) for o, p in zip(before, problems)],
              [d in p["dims"] for d, p in zip(tag_dims, problems)], "random pick of the 4 dealt")

    ranker = RootRanker(tagger)  # what ships: cues and labelled examples (the problem itself left out)
    ranked = [ranker.rank(p["text"], leave_out=True) for p in problems]
    top_dims = [dim_of[r[0]] for r in ranked]
    for name, rk in (("cues only", RootRanker(tagger, examples=[])),
                     ("examples only (nearest labelled problems)", RootRanker(tagger, dimension_weight=0.0))):
        if not rk.examples:
            top = [rk.rank(p["text"])[0] for p in problems]
        else:
            rk.tagger = DimensionTagger()
            rk.tagger.cues = {}
            top = [rk.rank(p["text"], leave_out=True)[0] for p in problems]
        table.add(name, [t in p["accept"] for t, p in zip(top, problems)], [dim_of[t] in p["dims"] for t, p in zip(top, problems)])
    table.add("cues + examples (RootRanker, ships)", [r[0] in p["accept"] for r, p in zip(ranked, problems)],
              [d in p["dims"] for d, p in zip(top_dims, problems)])
    within = [ranker.rank(p["text"], dimension=d, leave_out=True) for d, p in zip(tag_dims, problems)]
    table.add("tagger dimension + ranker within it", [r[0] in p["accept"] for r, p in zip(within, problems)],
              [d in p["dims"] for d, p in zip(tag_dims, problems)])
    for k in (2, 3):
        table.add(f"ships, shortlist of {k}: all fit", [all(x in p["accept"] for x in r[:k]) for r, p in zip(ranked, problems)],
                  [d in p["dims"] for d, p in zip(top_dims, problems)], "no choice of the model can miss")
        table.add(f"ships, shortlist of {k}: random pick", [share(r[:k], p["accept"]) for r, p in zip(ranked, problems)],
                  [d in p["dims"] for d, p in zip(top_dims, problems)])
        table.add(f"ships, shortlist of {k}: any fits", [any(x in p["accept"] for x in r[:k]) for r, p in zip(ranked, problems)],
                  [d in p["dims"] for d, p in zip(top_dims, problems)], "a perfect chooser")
    if args.weights:
        for w in (0.0, 0.25, 0.5, 1.0, 2.0):
            rk = RootRanker(tagger, dimension_weight=w)
            top = [rk.rank(p["text"], leave_out=True)[0] for p in problems]
            table.add(f"ships, dimension weight {w}", [t in p["accept"] for t, p in zip(top, problems)],
                      [dim_of[t] in p["dims"] for t, p in zip(top, problems)])
        for n in (3, 5, 12):
            rk = RootRanker(tagger, neighbours=n)
            top = [rk.rank(p["text"], leave_out=True)[0] for p in problems]
            table.add(f"ships, {n} neighbours", [t in p["accept"] for t, p in zip(top, problems)],
                      [dim_of[t] in p["dims"] for t, p in zip(top, problems)])

    if not args.no_embed:
        from pipeline.config import load_config
        from pipeline.corpus.embed import make_embedder

        config = load_config()
        embedder = make_embedder(config.embedder, config.threads)
        sims = embed_scores(embedder, problems, all_roots)
        nearest = [all_roots[int(np.argmax(row))] for row in sims]
        table.add("embed nearest root", [r in p["accept"] for r, p in zip(nearest, problems)],
                  [dim_of[r] in p["dims"] for r, p in zip(nearest, problems)])
        col = {r: j for j, r in enumerate(all_roots)}
        near_in = [max(tagger.roots[d], key=lambda r: sims[i, col[r]]) for i, d in enumerate(tag_dims)]
        table.add("tagger dimension + embed nearest in it", [r in p["accept"] for r, p in zip(near_in, problems)],
                  [d in p["dims"] for d, p in zip(tag_dims, problems)])
        # the labelled examples' nearest by embedding, as a third signal beside cues and wording
        vecs = embedder.embed([p["text"] for p in problems], kind="query")
        example = np.array([p.get("round") != 3 for p in problems])
        mixed = []
        for i, p in enumerate(problems):
            near = vecs @ vecs[i]
            near[i], near[~example] = -9, -9
            votes = dict.fromkeys(all_roots, 0.0)
            for n in np.argsort(-near)[: ranker.neighbours]:
                for pos, r in enumerate(problems[n]["accept"]):
                    votes[r] += max(float(near[n]), 0.0) / (1 + 0.3 * pos)
            top = max(votes.values()) or 1.0
            s = ranker.scores(p["text"], leave_out=True)
            mixed.append(max(all_roots, key=lambda r: s[r] + votes[r] / top))
        table.add("ships + examples nearest by embedding", [r in p["accept"] for r, p in zip(mixed, problems)],
                  [dim_of[r] in p["dims"] for r, p in zip(mixed, problems)])
    for name, found in (("keyword-retrieved", lambda: keyword_dimensions(problems)),
                        ("hybrid-retrieved", lambda: retrieved_dimensions(problems, embedder))):
        if name.startswith("hybrid") and not (args.hybrid and not args.no_embed):
            continue
        ret_dims = [d or tag_dims[i] for i, d in enumerate(found())]
        table.add(f"{name} items' dimension, dealt", [share(dealt(tagger, d, p["text"]), p["accept"]) for d, p in zip(ret_dims, problems)],
                  [d in p["dims"] for d, p in zip(ret_dims, problems)], "random pick of the 4 dealt")
        table.add(f"{name} dimension + ranker within it",
                  [ranker.rank(p["text"], dimension=d, leave_out=True)[0] in p["accept"] for d, p in zip(ret_dims, problems)],
                  [d in p["dims"] for d, p in zip(ret_dims, problems)])

    if args.model is not None:
        offers = args.model or ["dealt", "3", "2"]
        if "dealt" in offers:
            chosen = model_choices(problems, before, tagger, tag_dims)
            table.add("model among dealt (before)", [c in p["accept"] for c, p in zip(chosen, problems)],
                      [d in p["dims"] for d, p in zip(tag_dims, problems)])
        for k in (3, 2):
            if str(k) in offers:
                chosen = model_choices(problems, [r[:k] for r in ranked], tagger, top_dims)
                table.add(f"model among the ranker's top {k}", [c in p["accept"] for c, p in zip(chosen, problems)],
                          [d in p["dims"] for d, p in zip(top_dims, problems)])

    table.print()
    if args.misses:
        for r, p in zip(ranked, problems):
            if r[0] not in p["accept"]:
                print(f"  {p['text']} -> {r[0]}   (accept: {'；'.join(p['accept'][:3])})")


if __name__ == "__main__":
    main()
