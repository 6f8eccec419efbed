"""Hybrid retrieval: BM25 over Chinese tokens, fusion, MMR, filters — every hit comes from the corpus; the same
results from a local index and from a Chroma server."""

import pytest

from fakes import HashEmbedder
from pipeline.config import load_config
from pipeline.corpus.samples import (DEFAULT_CORPUS, DimensionTagger, Item, chunk_item, is_sub_chunk, load_corpus,
                             split_sentences, sub_chunks)
from pipeline.errors import InputError
from pipeline.corpus.retrieve import BM25, Retriever
from pipeline.corpus.store import Store, tokenize


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


# -- item-level hits over sentence sub-chunks (corpus.sub_chunks) ---------------------------------------------

def test_sub_chunks_are_the_heading_then_sentence_pairs():
    item = Item("s/01/1", "s/01", 1, "paren", "甲方面", "一。二。三。")
    subs = sub_chunks(item)
    assert [c.text for c in subs] == ["甲方面", "一。二。", "二。三。"]
    assert [c.id for c in subs] == ["s/01/1#s1", "s/01/1#s2", "s/01/1#s3"]
    assert all(c.item_id == item.id and is_sub_chunk(c.id) for c in subs)
    assert not any(is_sub_chunk(c.id) for c in chunk_item(item))
    assert sub_chunks(Item("s/01/2", "s/01", 2, "paren", "只有标题", "")) == []


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_hits_are_whole_items_each_once(retriever, mode):
    items = {it.id: it for it in load_corpus(DEFAULT_CORPUS).items}
    hits = retriever.search("群众反映的问题拖着不办，服务意识淡化", 8, mode=mode)
    assert hits and len({h.id for h in hits}) == len(hits)
    for hit in hits:
        assert hit.id == hit.item and hit.text == items[hit.id].text and hit.heading == items[hit.id].heading


def test_a_sub_chunk_match_returns_its_item(retriever):
    item = next(it for it in load_corpus(DEFAULT_CORPUS).items if len(split_sentences(it.body)) >= 4)
    middle = "".join(split_sentences(item.body)[1:3])  # exactly one sub-chunk's text, not the item's
    hit = retriever.search(middle, 1, mode="dense")[0]
    assert (hit.id, hit.text) == (item.id, item.text)


def test_exclude_takes_item_ids(retriever):
    first = retriever.search("理论学习不深入", 3)
    again = retriever.search("理论学习不深入", 3, exclude={h.id for h in first})
    assert again and not {h.id for h in first} & {h.id for h in again}


def test_a_long_item_is_one_hit_with_its_whole_text(tmp_path):
    body = "".join(f"第{n}句讲理论学习不够深入系统，学用结合不够紧密，联系实际解决问题的能力还不强。" for n in range(1, 25))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "s.txt").write_text(f"（一）理论学习不深入。{body}\n（二）服务群众不到位。群众办事难。\n",
                                               encoding="utf-8")
    config = load_config({"home": tmp_path / "home", "corpus": tmp_path / "corpus", "embedder": HashEmbedder.name})
    Store(config).sync(HashEmbedder())
    retriever = Retriever(config, embedder=HashEmbedder())
    long_item = load_corpus(tmp_path / "corpus").items[0]
    assert any("#p" in cid for cid in retriever.meta)  # the item was split into parts
    for mode in ("hybrid", "dense", "keyword"):
        hits = retriever.search("第24句讲理论学习", 2, mode=mode)
        assert [h.id for h in hits].count(long_item.id) == 1
        assert next(h for h in hits if h.id == long_item.id).text == long_item.text


def test_query_expansion_uses_the_dimension_keywords(retriever):
    assert "群众" in retriever.expansion("窗口服务态度差，办事排队时间长")
    assert retriever.expansion("任何话", "作风建设") == DimensionTagger().dimensions["作风建设"]
    assert retriever.expansion("今天天气不错") == []
    retriever.expand = 0.3
    try:
        hits = retriever.search("窗口服务态度差", 3, mode="keyword")
    finally:
        del retriever.expand
    assert hits and all("#" not in h.id for h in hits)
