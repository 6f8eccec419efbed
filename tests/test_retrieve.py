"""Hybrid retrieval: BM25 over Chinese tokens, fusion, MMR, filters — every hit comes from the corpus; the same
results from a local index and from a Chroma server."""

import pytest

from fakes import HashEmbedder
from pipeline.config import load_config
from pipeline.corpus import DEFAULT_CORPUS, load_corpus
from pipeline.errors import InputError
from pipeline.retrieve import BM25, Retriever
from pipeline.store import Store, tokenize


def _index(home, chroma_url=None):
    config = load_config({"home": home, "corpus": DEFAULT_CORPUS, "embedder": HashEmbedder.name, "chroma_url": chroma_url})
    Store(config).sync(HashEmbedder())
    return Retriever(config, embedder=HashEmbedder())


@pytest.fixture(scope="module", params=["local", "server"])
def retriever(request, tmp_path_factory):
    """The seed corpus indexed in a local PersistentClient, or on a real Chroma server through HttpClient."""
    url = request.getfixturevalue("chroma_server") if request.param == "server" else None
    return _index(tmp_path_factory.mktemp("home"), url)


def test_tokenize_scores_chinese():
    tokens = tokenize("宗旨意识树得不牢，群众观点淡化。")
    assert "宗旨" in tokens and "群众" in tokens
    bm25 = BM25({"a": tokenize("群众路线走得不实"), "b": tokenize("理论学习不深入")})
    scores = bm25.scores(tokenize("联系群众"))
    assert scores[0] > 0 and scores[1] == 0


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_every_hit_comes_from_the_corpus(retriever, mode):
    chunks = {c.id: c for c in load_corpus(DEFAULT_CORPUS).chunks()}
    hits = retriever.search("领导班子理论学习流于形式", 5, mode=mode)
    assert hits
    for hit in hits:
        assert chunks[hit.id].text == hit.text and chunks[hit.id].sample_id == hit.sample


def test_keyword_finds_the_obvious_item(retriever):
    hits = retriever.search("一岗双责履行不到位", 3, mode="keyword")
    assert hits[0].id == "seed-2021-dangshi/07/4"


def test_dimension_and_sample_filters(retriever):
    hits = retriever.search("工作作风不实", 5, dimension="作风建设")
    assert hits and all("作风建设" in h.dimension for h in hits)
    hits = retriever.search("理论学习", 5, sample="seed-2021-dangshi/03")
    assert hits and all(h.sample == "seed-2021-dangshi/03" for h in hits)


def _redundancy(retriever, hits):
    vectors = retriever.embedder.embed([h.text for h in hits])
    sims = vectors @ vectors.T
    n = len(hits)
    return (sims.sum() - n) / (n * (n - 1))


def test_mmr_diversifies(retriever):
    plain = retriever.search("宗旨意识树的不牢", 5, mmr_lambda=1.0)
    diverse = retriever.search("宗旨意识树的不牢", 5, mmr_lambda=0.3)
    assert [h.id for h in plain] != [h.id for h in diverse]
    assert _redundancy(retriever, diverse) < _redundancy(retriever, plain)
    assert plain[0].id == diverse[0].id  # the most relevant hit always comes first


def test_empty_query(retriever):
    with pytest.raises(InputError):
        retriever.search("   ")


def test_server_and_local_index_give_the_same_results(tmp_path, chroma_server):
    local, remote = _index(tmp_path / "local"), _index(tmp_path / "remote", chroma_server)
    assert remote.store.remote and not local.store.remote
    assert len(remote.meta) == len(local.meta) == len(load_corpus(DEFAULT_CORPUS).chunks())
    for query in ("领导班子理论学习流于形式", "宗旨意识树得不牢", "一岗双责履行不到位"):
        for mode in ("hybrid", "dense", "keyword"):
            assert [h.id for h in remote.search(query, 5, mode=mode)] == [h.id for h in local.search(query, 5, mode=mode)]
