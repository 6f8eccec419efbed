"""Hybrid retrieval over the pattern store: dense (chromadb) + keyword (BM25 over jieba tokens),
fused by reciprocal rank fusion, then diversified by maximal marginal relevance (MMR). Results are items.

Both searches also match each item's sentence sub-chunks (corpus.sub_chunks): a hit on any chunk of an item
ranks the item, at its best chunk's rank; hits are always whole items.
Optional query expansion adds a dimension's keywords (corpus/dimensions.yaml) to the keyword query; it is off
by default because it lowered recall@5 on evals/retrieval_queries.yaml (see evals/bench_retrieval.py --variants).
Left out: re-ranking with a cross-encoder (none ships offline).
"""

import json
import math
import re
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.config import Config
from pipeline.corpus.samples import DEFAULT_DIMENSIONS, DimensionTagger, is_sub_chunk
from pipeline.errors import InputError
from pipeline.corpus.store import Store, tokenize

RRF_K = 60  # the constant from Cormack et al. 2009; larger flattens the rank curve
SUB_FANOUT = 8  # dense chunk candidates fetched per wanted item: one item has several sub-chunks


@dataclass
class Hit:
    id: str  # the item id (never a chunk id: a hit on a part or sub-chunk returns its whole item)
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
    """Search one corpus's index for items. Loads the embedder lazily, only for dense or hybrid search.

    The tuning knobs are attributes so a benchmark can vary them on one instance.
    """

    k1, b = 1.5, 0.75  # BM25 parameters (see evals/bench_retrieval.py --variants)
    subchunks = True  # dense search matches sentence sub-chunks too
    keyword_subchunks = True  # so does keyword search (BM25 over items, their parts and their sub-chunks)
    weights = {"dense": 1.0, "keyword": 1.0}  # RRF weight of each ranked list
    expand = 0.0  # weight of dimension keywords added to the keyword query; 0: no expansion

    def __init__(self, config: Config, embedder=None, corpus_dir=None):
        self.config = config
        self.store = Store(config, corpus_dir, embedder=embedder.name if embedder else None)
        self.collection = self.store.collection()  # this corpus and embedder's; names the other embedder if built with one
        # keyword data derived from the collection itself, so chunks indexed on another machine are found too
        self.meta = self.store.load_keywords(self.collection)  # chunk id -> heading, text, sample, item, dimensions, tokens
        self.bm25 = self.keyword_index()
        self.items = _items(self.meta)  # item id -> heading, text, sample, dimensions, chunks (whole or parts)
        self._embedder = embedder
        self._tagger = None

    @property
    def embedder(self):
        if self._embedder is None:
            from pipeline.corpus.embed import make_embedder

            self._embedder = make_embedder(self.config.embedder, self.config.threads, self.config.cache)
        return self._embedder

    def _allowed(self, cid: str, dimension: str | None, sample: str | None) -> bool:
        meta = self.meta[cid]
        return (not dimension or dimension in meta["dimensions"]) and (not sample or meta["sample"] == sample)

    def keyword_index(self) -> BM25:
        """BM25 over the chunks keyword search matches, with the current k1, b and `keyword_subchunks`."""
        return BM25({cid: m["tokens"] for cid, m in self.meta.items()
                     if self.keyword_subchunks or not is_sub_chunk(cid)}, self.k1, self.b)

    @property
    def tagger(self) -> DimensionTagger:
        if self._tagger is None:
            own = self.store.corpus_dir / "dimensions.yaml"  # as load_corpus picks it
            self._tagger = DimensionTagger(own if own.exists() else DEFAULT_DIMENSIONS)
        return self._tagger

    def _collapse(self, chunk_ids, n: int) -> list[str]:
        """Item ids in the order of their best chunk, at most n."""
        return list(dict.fromkeys(self.meta[cid]["item"] for cid in chunk_ids if self.meta[cid]["item"] in self.items))[:n]

    def dense(self, query_vec: np.ndarray, n: int, dimension=None, sample=None) -> list[str]:
        """Up to n item ids by cosine of their closest chunk (sub-chunks included when `subchunks`)."""
        where = [{f"dim:{dimension}": True}] if dimension else []
        where += [{"sample": sample}] if sample else []
        with self.store.guard():  # a server that dies or freezes mid-search: one Chinese line, not a traceback
            found = self.collection.query(
                query_embeddings=[query_vec.tolist()], n_results=max(1, min(n * SUB_FANOUT, len(self.meta))),
                where=(where[0] if len(where) == 1 else {"$and": where}) if where else None, include=["distances"],
            )
        return self._collapse([c for c in found["ids"][0] if self.subchunks or not is_sub_chunk(c)], n)

    def keyword(self, query: str, n: int, dimension=None, sample=None) -> list[str]:
        """Up to n item ids by BM25 of their best-scoring chunk."""
        scores = self.bm25.scores(tokenize(query))
        if self.expand:
            scores = scores + self.expand * self.bm25.scores(self.expansion(query, dimension))
        order = np.argsort(-scores, kind="stable")
        ids = [self.bm25.ids[i] for i in order if scores[i] > 0]
        return self._collapse([cid for cid in ids if self._allowed(cid, dimension, sample)], n)

    def expansion(self, query: str, dimension=None) -> list[str]:
        """Keywords of `dimension`, else of every dimension the query's own words point to (none: no expansion)."""
        if dimension:
            return self.tagger.dimensions.get(dimension, [])
        scores = self.tagger.scores(query)
        return [w for name, score in scores.items() if score for w in self.tagger.dimensions[name]]

    def search(self, query: str, k: int = 5, *, dimension: str | None = None, sample: str | None = None,
               mode: str = "hybrid", mmr_lambda: float = 0.7, exclude: set[str] = frozenset()) -> list[Hit]:
        """Top-k items for `query`. mode: "hybrid" (RRF + MMR), "dense" or "keyword" (plain ranking).

        `exclude`: item ids to leave out (ids of earlier hits).
        """
        if not query.strip():
            raise InputError("查询内容是空的。")
        n = max(30, 4 * k)
        ranked: dict[str, float] = defaultdict(float)  # item id -> fused score
        lists = []
        if mode in ("hybrid", "dense"):
            query_vec = self.embedder.embed([query], kind="query")[0]
            lists.append(("dense", self.dense(query_vec, n, dimension, sample)))
        if mode in ("hybrid", "keyword"):
            lists.append(("keyword", self.keyword(query, n, dimension, sample)))
        for name, ids in lists:
            for rank, item in enumerate(ids):
                if item not in exclude:
                    ranked[item] += self.weights[name] / (RRF_K + rank + 1)
        order = sorted(ranked, key=lambda item: -ranked[item])
        if mode == "hybrid" and len(order) > k:
            order = self._mmr(order, ranked, k, mmr_lambda)
        return [self._hit(item, ranked[item]) for item in order[:k]]

    def _mmr(self, order: list[str], relevance: dict[str, float], k: int, lam: float) -> list[str]:
        """Greedy MMR over items: trade relevance (normalised fused score) against cosine to what is picked.

        An item's vector is its whole chunk's (its first part's for a long item).
        """
        first = {self.items[item]["chunks"][0]: item for item in order}
        with self.store.guard():
            got = self.collection.get(ids=list(first), include=["embeddings"])
        vectors = {first[cid]: v for cid, v in zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32))}
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

    def _hit(self, item: str, score: float) -> Hit:
        m = self.items[item]
        return Hit(item, item, m["sample"], m["heading"], m["text"], m["dimensions"], round(score, 6))


def _items(meta: dict) -> dict:
    """item id -> {"heading", "text", "sample", "dimensions", "chunks"}; a long item's text is its parts rejoined."""
    parts: dict[str, list[str]] = defaultdict(list)  # item id -> its whole chunk's id, or its parts' ids
    for cid, m in meta.items():
        if not is_sub_chunk(cid):
            parts[m["item"]].append(cid)
    items = {}
    for item, cids in parts.items():
        cids.sort(key=lambda cid: int(part.group(1)) if (part := re.search(r"#p(\d+)$", cid)) else 0)
        m = meta[cids[0]]
        body = "".join(meta[cid]["text"][len(m["heading"]) + 1 :] for cid in cids)  # each part is "heading。part"
        text = m["text"] if len(cids) == 1 else f"{m['heading']}。{body}"
        items[item] = {"heading": m["heading"], "text": text, "sample": m["sample"], "dimensions": m["dimensions"],
                       "chunks": cids}
    return items


def run_search(config: Config, query: str, *, k: int = 5, dimension=None, sample=None, as_json=False) -> int:
    """`poxi search`: print hits as text or JSON, within the search's time limit (config.search_deadline)."""
    from pipeline.corpus.samples import DimensionTagger

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
    from pipeline.deadline import Budget, within

    # the embedder changed since `poxi index`: build its own index first (after the input checks, and outside
    # the search's time limit: a rebuild embeds the whole corpus)
    Store(config).follow_embedder()
    budget = Budget(config.search_deadline, "本次检索", "POXI_SEARCH_DEADLINE")
    hits = within(budget, lambda: Retriever(config).search(query, k, dimension=dimension, sample=sample))
    if as_json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("没有找到相关段落。", file=sys.stderr)
    for n, hit in enumerate(hits, 1):
        print(f"{n}. [{hit.id}]（{'、'.join(hit.dimension)}）得分 {hit.score:.4f}\n   {hit.text[:160]}…\n")
    return 0
