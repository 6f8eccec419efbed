"""The on-disk pattern store: corpus chunks embedded into chromadb, plus a keyword sidecar.

One chromadb PersistentClient under `<home>/index`, one collection per corpus folder. Collections are
created without an embedding function (chromadb's default would download an ONNX model) and receive
vectors we compute. Re-indexing is incremental by chunk content hash; a file lock serialises writers.
The keyword sidecar (`<collection>.keywords.json`) keeps each chunk's text and tokens so keyword search
needs no re-tokenising at query time.
Left out: ranking (retrieve.py) and remote chroma servers.
"""

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .corpus import Chunk, load_corpus
from .embed import embedder_name
from .errors import IndexError_, InputError

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def tokenize(text: str) -> list[str]:
    """Chinese-aware keyword tokens: jieba's search-mode words, minus punctuation and single characters."""
    import jieba

    jieba.setLogLevel(60)
    return [w for w in jieba.lcut_for_search(text) if len(w) > 1 and not all(not ch.isalnum() for ch in w)]


@dataclass
class IndexSummary:
    files: int
    samples: int
    items: int
    chunks: int
    new: int
    unchanged: int
    removed: int
    seconds: float
    problems: list[str]


class Store:
    """A corpus's chromadb collection and keyword sidecar."""

    def __init__(self, config: Config, corpus_dir: Path | None = None):
        self.config = config
        self.corpus_dir = Path(corpus_dir or config.corpus).resolve()
        self.dir = config.index_dir
        key = hashlib.sha1(str(self.corpus_dir).encode()).hexdigest()[:12]
        self.name = f"poxi_{key}"
        self.sidecar = self.dir / f"{self.name}.keywords.json"
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import chromadb
            from chromadb.config import Settings

            self.dir.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(self.dir), settings=Settings(anonymized_telemetry=False))
        return self._client

    def lock(self):
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.dir / f"{self.name}.lock"))

    def collection(self, create_for: str | None = None):
        """The collection; with `create_for` (an embedder name) create it or recreate it for that embedder."""
        if create_for is None:
            try:
                collection = self.client.get_collection(self.name, embedding_function=None)
            except Exception:
                raise IndexError_(f"语料「{self.corpus_dir}」还没有建立索引：请先运行 poxi index。") from None
            return collection
        try:
            existing = self.client.get_collection(self.name, embedding_function=None)
            if existing.metadata.get("embedder") == create_for:
                return existing
            self.client.delete_collection(self.name)
        except Exception:
            pass
        meta = {"embedder": create_for, "corpus": str(self.corpus_dir), "hnsw:space": "cosine"}
        return self.client.create_collection(self.name, metadata=meta, embedding_function=None)

    def check_embedder(self, collection, spec: str) -> None:
        built, wanted = collection.metadata.get("embedder"), embedder_name(spec)
        if built != wanted:
            raise IndexError_(
                f"索引是用向量模型「{built}」建立的，当前设置为「{wanted}」：请加 --embedder 使用原模型，"
                f"或运行 poxi index --embedder {spec} 重建索引。"
            )

    def load_keywords(self) -> dict:
        """chunk id -> {"heading", "text", "sample", "item", "dimensions", "tokens"}"""
        if not self.sidecar.exists():
            raise IndexError_(f"找不到关键词索引「{self.sidecar}」：请运行 poxi index。")
        return json.loads(self.sidecar.read_text(encoding="utf-8"))

    def sync(self, embedder=None, progress: bool = False) -> IndexSummary:
        """Bring the index in line with the corpus folder; embed only new or changed chunks."""
        start = time.perf_counter()
        corpus = load_corpus(self.corpus_dir)
        chunks = {chunk.id: chunk for chunk in corpus.chunks()}
        with self.lock():
            wanted = embedder.name if embedder else embedder_name(self.config.embedder)
            collection = self.collection(create_for=wanted)
            stored = collection.get(include=["metadatas"])
            stored_hash = {cid: meta.get("hash") for cid, meta in zip(stored["ids"], stored["metadatas"])}
            todo = [c for c in chunks.values() if stored_hash.get(c.id) != c.hash]
            removed = [cid for cid in stored_hash if cid not in chunks]
            if removed:
                collection.delete(ids=removed)
            if todo:
                if embedder is None:
                    from .embed import make_embedder

                    embedder = make_embedder(self.config.embedder, self.config.threads)
                self._embed_into(collection, todo, embedder, progress)
            if todo or removed or not self.sidecar.exists():
                self._write_sidecar(chunks.values())
        return IndexSummary(
            files=len(corpus.files), samples=len(corpus.samples), items=len(corpus.items), chunks=len(chunks),
            new=len(todo), unchanged=len(chunks) - len(todo), removed=len(removed),
            seconds=time.perf_counter() - start, problems=corpus.problems,
        )

    def _embed_into(self, collection, chunks: list[Chunk], embedder, progress: bool) -> None:
        from tqdm import tqdm

        step = 64
        with tqdm(total=len(chunks), desc="向量化", unit="段", disable=not progress, file=sys.stderr) as bar:
            for i in range(0, len(chunks), step):
                batch = chunks[i : i + step]
                vectors = embedder.embed([c.text for c in batch], kind="passage")
                collection.upsert(
                    ids=[c.id for c in batch],
                    embeddings=vectors.tolist(),
                    documents=[c.text for c in batch],
                    metadatas=[chunk_metadata(c) for c in batch],
                )
                bar.update(len(batch))

    def _write_sidecar(self, chunks) -> None:
        data = {
            c.id: {"heading": c.heading, "text": c.text, "sample": c.sample_id, "item": c.item_id,
                   "dimensions": list(c.dimensions), "tokens": tokenize(c.text)}
            for c in chunks
        }
        tmp = self.sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.sidecar)


def chunk_metadata(chunk: Chunk) -> dict:
    # one boolean key per dimension so chromadb's `where` can filter on it
    meta = {"hash": chunk.hash, "item": chunk.item_id, "sample": chunk.sample_id, "heading": chunk.heading,
            "dimensions": "|".join(chunk.dimensions)}
    meta.update({f"dim:{d}": True for d in chunk.dimensions})
    return meta


def run_index(config: Config, progress: bool = True) -> int:
    """`poxi index`: sync, print a summary; exit 2 when some files could not be used."""
    store = Store(config)
    if not store.corpus_dir.is_dir():
        raise InputError(f"找不到语料文件夹「{store.corpus_dir}」，请用 --corpus 指定一个存在的文件夹。")
    print(f"正在索引语料：{store.corpus_dir}", file=sys.stderr)
    summary = store.sync(progress=progress)
    for problem in summary.problems:
        print(f"警告：{problem}", file=sys.stderr)
    print(
        f"完成：{summary.files} 个文件，{summary.samples} 篇范文，{summary.items} 条，{summary.chunks} 段；"
        f"新增/更新 {summary.new}，未变 {summary.unchanged}，删除 {summary.removed}；用时 {summary.seconds:.2f} 秒。"
    )
    if summary.problems:
        print(f"有 {len(summary.problems)} 个文件无法使用（见上方警告），其余已建立索引。", file=sys.stderr)
        return 2
    return 0
