"""Which thinking (思想根源) fits a problem: rank corpus/dimensions.yaml's `roots` for a problem's words.

Two signals, each scaled to 1 at its best root and added:
- cues: the problem words that call for a root (dimensions.yaml `cues`: 迁就 → 好人主义, 急于求成 → 政绩观,
  撤稿 → 诚信), each counted by its length as the dimension keywords are, plus a share of the root's dimension
  keyword score, so that a problem without a root's cue still leans to the roots of its dimension;
- examples: the labelled problems closest to it in wording (corpus/root_examples.yaml; TF-IDF over character
  bigrams), each voting for the roots a writer accepted after it. Cues alone fitted the problems they were
  written with and missed most problems written afterwards; the examples carry over to new wordings.
A problem's dimensions rank by their best root. The chain offers each link the best OFFERED roots of its
section's dimension, none to two links (plan.section_roots).

Left out: embeddings (measured in evals/bench_roots.py: they add little to this and would load the embedder for
every plan), and the model's choice itself (the chain's grammar).
"""

import math
import re
from collections import Counter
from pathlib import Path

import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.corpus.samples import DimensionTagger
from pipeline.textio import read_text

DEFAULT_EXAMPLES = PROJECT_ROOT / "corpus" / "root_examples.yaml"
DIMENSION_WEIGHT = 0.5  # a root's dimension keywords beside its own cues
NEIGHBOURS = 8  # labelled problems that vote (bench_roots: 3, 5, 8, 12 within a few points)
# a problem leaves its best section for another (plan.plan_sections) only where that one's best root scores
# at least this share of its best
MOVE_FIT = 0.5
# roots offered to a link: the model chose no better than chance among two (see evals/bench_roots.py --model 2)
OFFERED = 1
RANK_DISCOUNT = 0.3  # a writer's first accepted root counts 1, the next 1/1.3, 1/1.6 …
HAN = re.compile(r"[\u4e00-\u9fff]+")


def bigrams(text: str) -> Counter:
    """Character bigrams of the Chinese runs. Example: bigrams("迁就企业") == Counter({"迁就": 1, "就企": 1, "企业": 1})"""
    return Counter(run[i : i + 2] for run in HAN.findall(text) for i in range(len(run) - 1))


def _cue_score(text: str, cues) -> int:
    """Characters of `text` that `cues` cover, a cue inside a longer one counted once.
    Example: _cue_score("理论学习流于形式", ["形式", "流于形式"]) == 4"""
    score = 0
    for cue in sorted(cues, key=len, reverse=True):
        score += len(cue) * text.count(cue)
        text = text.replace(cue, "\0")
    return score


def load_examples(path: str | Path = DEFAULT_EXAMPLES) -> list[dict]:
    """[{"text", "accept"}] from a YAML list under `examples`; none when the file is missing."""
    path = Path(path)
    if not path.exists():
        return []
    return [{"text": str(e["text"]), "accept": [str(r) for r in e["accept"]]}
            for e in yaml.safe_load(read_text(path)).get("examples") or []]


class RootRanker:
    """Rank roots for a problem. Example: RootRanker(DimensionTagger()).rank("招商中迁就企业")[0] names 好人主义."""

    def __init__(self, tagger: DimensionTagger, examples: list[dict] | None = None,
                 dimension_weight: float = DIMENSION_WEIGHT, neighbours: int = NEIGHBOURS):
        self.tagger, self.weight, self.neighbours = tagger, dimension_weight, neighbours
        self.dimension_of = {root: d for d, roots in tagger.roots.items() for root in roots}  # root -> dimension
        known = set(self.dimension_of)
        self.examples = [{**e, "accept": [r for r in e["accept"] if r in known]}
                         for e in (load_examples() if examples is None else examples)]
        counts = Counter(g for e in self.examples for g in bigrams(e["text"]))
        n = len(self.examples)
        self.idf = {g: math.log(1 + n / (1 + c)) for g, c in counts.items()}
        self.unseen = math.log(1 + n)  # a bigram no example has
        self.vectors = [self._vector(e["text"]) for e in self.examples]

    def _vector(self, text: str) -> dict[str, float]:
        weights = {g: c * self.idf.get(g, self.unseen) for g, c in bigrams(text).items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {g: w / norm for g, w in weights.items()}

    def cue_scores(self, heading: str, body: str = "") -> dict[str, float]:
        """Root -> its cues in the problem (the heading counts three times, as in DimensionTagger.scores)."""
        dims = self.tagger.scores(heading, body)
        return {root: self.weight * dims.get(d, 0) + 3 * _cue_score(heading, self.tagger.cues.get(root, ()))
                + _cue_score(body, self.tagger.cues.get(root, ())) for root, d in self.dimension_of.items()}

    def example_scores(self, text: str, leave_out: bool = False) -> dict[str, float]:
        """Root -> votes of the `neighbours` examples closest to `text` (leave_out: not one with the same text)."""
        query = self._vector(text)
        sims = [(sum(w * vec.get(g, 0.0) for g, w in query.items()), k) for k, vec in enumerate(self.vectors)
                if not (leave_out and self.examples[k]["text"] == text)]
        votes: dict[str, float] = dict.fromkeys(self.dimension_of, 0.0)
        for sim, k in sorted(sims, reverse=True)[: self.neighbours]:
            for pos, root in enumerate(self.examples[k]["accept"]):
                votes[root] += max(sim, 0.0) / (1 + RANK_DISCOUNT * pos)
        return votes

    def scores(self, heading: str, body: str = "", leave_out: bool = False) -> dict[str, float]:
        """Root -> fit to a problem: cues and examples, each scaled to 1 at its best root."""
        cues = self.cue_scores(heading, body)
        votes = self.example_scores(body or heading, leave_out)
        top_cue, top_vote = max(cues.values(), default=0) or 1.0, max(votes.values(), default=0) or 1.0
        return {r: cues[r] / max(top_cue, 1.0) + votes[r] / top_vote for r in self.dimension_of}

    def rank(self, heading: str, body: str = "", dimension: str | None = None, turn: int = 0,
             leave_out: bool = False, pool: list[str] | None = None) -> list[str]:
        """The roots of `pool`, or of `dimension`, or of every dimension, best first; equal scores keep the
        pool's order turned by `turn`, so another note gets another of equally fitting roots."""
        if pool is None:
            pool = self.tagger.roots.get(dimension, []) if dimension else list(self.dimension_of)
        scores = self.scores(heading, body, leave_out)
        order = {root: (k - turn) % len(pool) for k, root in enumerate(pool)}
        return sorted(pool, key=lambda r: (-round(scores.get(r, 0.0), 9), order[r]))

    def dimension_scores(self, heading: str, body: str = "") -> dict[str, float]:
        """Dimension -> its best root's score: what plan_sections ranks a problem's dimensions by."""
        scores = self.scores(heading, body)
        return {d: max((scores[r] for r in self.tagger.roots.get(d, ())), default=0.0) for d in self.tagger.names}


def deal_roots(ranked: list[list[str]], most: int) -> list[list[str]]:
    """Each link's offer from its own ranking (best first), no root offered to two links: in rounds, each link
    in turn takes its best root not yet taken, up to `most`. Example:
    deal_roots([["a", "b", "c"], ["a", "c", "b"]], 2) == [["a", "b"], ["c"]]"""
    taken: set[str] = set()
    out: list[list[str]] = [[] for _ in ranked]
    for _ in range(most):
        for k, order in enumerate(ranked):
            pick = next((r for r in order if r not in taken), None)
            if pick and len(out[k]) < most:
                out[k].append(pick)
                taken.add(pick)
    return [offer or order[:1] for offer, order in zip(out, ranked)]
