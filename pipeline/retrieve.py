"""Hybrid retrieval over the pattern store: dense (chromadb) + keyword (BM25 over jieba tokens),
fused by reciprocal rank fusion, then diversified by maximal marginal relevance (MMR).

Left out: re-ranking with a cross-encoder (none ships offline) and query expansion.
"""

import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from .config import Config
from .errors import InputError
from .store import Store, tokenize

RRF_K = 60  # the constant from Cormack et al. 2009; larger flattens the rank curve


@dataclass
class Hit:
    id: str
    item: str
    sample: str
    heading: str
    text: str
    dimension: list[str]
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


class BM25:
    """Okapi BM25 over pre-tokenised documents. Example: BM25({"a": ["理论", "学习"]}).scores(["学习"])"""

    def __init__(self, docs: dict[str, list[str]], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.ids = list(docs)
        self.lengths = np.array([len(docs[i]) for i in self.ids], dtype=np.float32)
        self.avg = float(self.lengths.mean()) if self.ids else 1.0
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)  # token -> [(doc index, tf)]
        for n, doc_id in enumerate(self.ids):
            for token, tf in Counter(docs[doc_id]).items():
                self.postings[token].append((n, tf))

    def scores(self, tokens: list[str]) -> np.ndarray:
        out = np.zeros(len(self.ids), dtype=np.float32)
        norm = self.k1 * (1 - self.b + self.b * self.lengths / self.avg)
        for token in set(tokens):
            posting = self.postings.get(token)
            if not posting:
                continue
            idf = math.log(1 + (len(self.ids) - len(posting) + 0.5) / (len(posting) + 0.5))
            rows = np.array([p[0] for p in posting])
            tf = np.array([p[1] for p in posting], dtype=np.float32)
            out[rows] += idf * tf * (self.k1 + 1) / (tf + norm[rows])
        return out


class Retriever:
    """Search one corpus's index. Loads the embedder lazily, only for dense or hybrid search."""

    def __init__(self, config: Config, embedder=None, corpus_dir=None):
        self.config = config
        self.store = Store(config, corpus_dir, embedder=embedder.name if embedder else None)
        self.collection = self.store.collection()  # this corpus and embedder's; names the other embedder if built with one
        # keyword data derived from the collection itself, so chunks indexed on another machine are found too
        self.meta = self.store.load_keywords(self.collection)  # chunk id -> heading, text, sample, item, dimensions, tokens
        self.bm25 = BM25({cid: m["tokens"] for cid, m in self.meta.items()})
        self._embedder = embedder

    @property
    def embedder(self):
        if self._embedder is None:
            from .embed import make_embedder

            self._embedder = make_embedder(self.config.embedder, self.config.threads)
        return self._embedder

    def _allowed(self, cid: str, dimension: str | None, sample: str | None) -> bool:
        meta = self.meta[cid]
        return (not dimension or dimension in meta["dimensions"]) and (not sample or meta["sample"] == sample)

    def dense(self, query_vec: np.ndarray, n: int, dimension=None, sample=None) -> list[str]:
        where = [{f"dim:{dimension}": True}] if dimension else []
        where += [{"sample": sample}] if sample else []
        found = self.collection.query(
            query_embeddings=[query_vec.tolist()], n_results=max(1, min(n, len(self.meta))),
            where=(where[0] if len(where) == 1 else {"$and": where}) if where else None, include=["distances"],
        )
        return found["ids"][0]

    def keyword(self, query: str, n: int, dimension=None, sample=None) -> list[str]:
        scores = self.bm25.scores(tokenize(query))
        order = np.argsort(-scores, kind="stable")
        ids = [self.bm25.ids[i] for i in order if scores[i] > 0]
        return [cid for cid in ids if self._allowed(cid, dimension, sample)][:n]

    def search(self, query: str, k: int = 5, *, dimension: str | None = None, sample: str | None = None,
               mode: str = "hybrid", mmr_lambda: float = 0.7, exclude: set[str] = frozenset()) -> list[Hit]:
        """Top-k chunks for `query`. mode: "hybrid" (RRF + MMR), "dense" or "keyword" (plain ranking)."""
        if not query.strip():
            raise InputError("查询内容是空的。")
        n = max(30, 4 * k)
        ranked: dict[str, float] = defaultdict(float)
        lists = []
        if mode in ("hybrid", "dense"):
            query_vec = self.embedder.embed([query], kind="query")[0]
            lists.append(self.dense(query_vec, n, dimension, sample))
        if mode in ("hybrid", "keyword"):
            lists.append(self.keyword(query, n, dimension, sample))
        for ids in lists:
            for rank, cid in enumerate(ids):
                if cid not in exclude:
                    ranked[cid] += 1.0 / (RRF_K + rank + 1)
        order = sorted(ranked, key=lambda cid: -ranked[cid])
        if mode == "hybrid" and len(order) > k:
            order = self._mmr(order, ranked, k, mmr_lambda)
        return [self._hit(cid, ranked[cid]) for cid in order[:k]]

    def _mmr(self, order: list[str], relevance: dict[str, float], k: int, lam: float) -> list[str]:
        """Greedy MMR: trade relevance (normalised fused score) against cosine to what is already picked."""
        got = self.collection.get(ids=order, include=["embeddings"])
        vectors = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
        top = relevance[order[0]]
        picked: list[str] = []
        candidates = list(order)
        while candidates and len(picked) < k:
            def gain(cid):
                redundancy = max((float(vectors[cid] @ vectors[p]) for p in picked), default=0.0)
                return lam * relevance[cid] / top - (1 - lam) * redundancy

            best = max(candidates, key=gain)
            picked.append(best)
            candidates.remove(best)
        return picked

    def _hit(self, cid: str, score: float) -> Hit:
        m = self.meta[cid]
        return Hit(cid, m["item"], m["sample"], m["heading"], m["text"], m["dimensions"], round(score, 6))


def run_search(config: Config, query: str, *, k: int = 5, dimension=None, sample=None, as_json=False) -> int:
    """`poxi search`: print hits as text or JSON."""
    from .corpus import DimensionTagger

    if dimension and dimension not in (names := DimensionTagger().names):
        raise InputError(f"未知的维度「{dimension}」。可用：{'、'.join(names)}")
    if k < 1:
        raise InputError("-k 至少为 1。")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:  # argv bytes that are not UTF-8 arrive as surrogate escapes
        raise InputError("查询内容不是有效的 UTF-8 文字：请检查终端的字符编码（如 LANG=zh_CN.UTF-8）后重试。") from None
    if not query.strip():
        raise InputError("查询内容是空的：请给出要检索的文字，如“理论学习不深入”。")
    hits = Retriever(config).search(query, k, dimension=dimension, sample=sample)
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("没有找到相关段落。", file=sys.stderr)
    for n, hit in enumerate(hits, 1):
        print(f"{n}. [{hit.id}]（{'、'.join(hit.dimension)}）得分 {hit.score:.4f}\n   {hit.text[:160]}…\n")
    return 0
