"""Changing the embedder builds the new embedder's own index: vectors of two embedders never share a collection."""

from dataclasses import replace

import numpy as np
import pytest

import pipeline.corpus.embed
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.corpus.samples import DEFAULT_CORPUS, load_corpus
from pipeline.errors import IndexError_
from pipeline.corpus.store import Store


class Named:
    """A hash-style test embedder with a chosen name: each name gives other vectors."""

    dim = 32

    def __init__(self, name):
        self.name = name

    def embed(self, texts, kind="passage"):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for a, b in zip(text, text[1:]):
                out[row, hash((self.name, a, b)) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline.corpus.embed, "make_embedder", lambda spec, *a, **k: Named(spec))
    return load_config({"home": tmp_path / "home", "corpus": DEFAULT_CORPUS, "embedder": "vec-a"})


def test_a_new_embedder_gets_its_own_index_and_the_old_one_stays(config):
    chunks = len(load_corpus(DEFAULT_CORPUS).chunks())
    Store(config).sync()
    switched = replace(config, embedder="vec-b")
    assert Store(switched).follow_embedder(progress=False) is True
    new, old = Store(switched).collection(), Store(config).collection()
    assert new.metadata["embedder"] == "vec-b" and old.metadata["embedder"] == "vec-a"
    assert new.count() == old.count() == chunks
    assert Store(switched).follow_embedder(progress=False) is False  # built once


def test_no_index_at_all_still_asks_for_poxi_index(config):
    with pytest.raises(IndexError_, match="poxi index"):
        Store(config).follow_embedder(progress=False)


def test_search_after_the_embedder_changed_rebuilds_then_answers(config, monkeypatch, capsys):
    Store(config).sync()
    monkeypatch.setenv("POXI_HOME", str(config.home))
    monkeypatch.setenv("POXI_EMBEDDER", "vec-b")
    assert main(["search", "理论学习不深入", "--json"]) == 0
    out = capsys.readouterr()
    assert "向量模型已换成「vec-b」" in out.err and '"id"' in out.out
