"""The labelled retrieval set (evals/retrieval_queries.yaml) is well formed and points at real seed items."""

from collections import Counter

import pytest
import yaml

from conftest import ROOT
from pipeline.corpus.samples import DEFAULT_CORPUS, load_corpus
from pipeline.corpus.store import tokenize

QUERIES = yaml.safe_load((ROOT / "evals" / "retrieval_queries.yaml").read_text(encoding="utf-8"))["queries"]
# the second set, written from the eval notes' problems (evals/cases), which the first set never saw
NOTE_QUERIES = yaml.safe_load((ROOT / "evals" / "retrieval_queries_notes.yaml").read_text(encoding="utf-8"))["queries"]


@pytest.fixture(scope="module")
def items():
    return {item.id: item for item in load_corpus(DEFAULT_CORPUS).items}


def test_enough_queries_and_no_duplicates():
    assert len(QUERIES) >= 30
    counts = Counter(q["query"] for q in QUERIES)
    assert [q for q, n in counts.items() if n > 1] == []


@pytest.mark.parametrize("case", QUERIES, ids=[q["query"][:12] for q in QUERIES])
def test_labels_exist_and_are_unique(case, items):
    relevant = case["relevant"]
    assert set(case) == {"query", "relevant"}
    assert 1 <= len(relevant) <= 8 and len(set(relevant)) == len(relevant)
    assert [r for r in relevant if r not in items] == []


@pytest.mark.parametrize("case", QUERIES, ids=[q["query"][:12] for q in QUERIES])
def test_query_is_not_a_copy_of_a_relevant_item(case, items):
    """A query in other words: no 12-character run of it appears verbatim in an item it labels."""
    query = case["query"]
    for item_id in case["relevant"]:
        text = items[item_id].text
        assert not any(query[i : i + 12] in text for i in range(len(query) - 11)), item_id


def test_queries_do_not_lean_on_one_item(items):
    """Labels are spread over the corpus: most items are relevant to some query, none to more than a third."""
    counts = Counter(r for q in QUERIES for r in q["relevant"])
    assert len(counts) >= 0.8 * len(items)
    assert max(counts.values()) <= len(QUERIES) / 3


def test_queries_tokenize_to_chinese_words():
    for case in QUERIES:
        assert len(tokenize(case["query"])) >= 3, case["query"]


def test_note_set_is_large_new_and_from_the_eval_notes():
    assert len(NOTE_QUERIES) >= 40
    texts = [q["query"] for q in NOTE_QUERIES]
    assert len(set(texts)) == len(texts) and not set(texts) & {q["query"] for q in QUERIES}
    cases = {path.stem for path in (ROOT / "evals" / "cases").glob("*.yaml")}
    assert {q["case"] for q in NOTE_QUERIES} <= cases and len({q["case"] for q in NOTE_QUERIES}) >= 15


@pytest.mark.parametrize("case", NOTE_QUERIES, ids=[q["query"][:12] for q in NOTE_QUERIES])
def test_note_set_labels_exist_and_are_its_own_words(case, items):
    assert set(case) == {"case", "query", "relevant"}
    relevant = case["relevant"]
    assert 1 <= len(relevant) <= 5 and len(set(relevant)) == len(relevant)
    assert [r for r in relevant if r not in items] == []
    query = case["query"]
    assert len(tokenize(query)) >= 3
    for item_id in relevant:
        assert not any(query[i : i + 12] in items[item_id].text for i in range(len(query) - 11)), item_id


def test_note_set_labels_are_spread(items):
    counts = Counter(r for q in NOTE_QUERIES for r in q["relevant"])
    assert len(counts) >= 0.8 * len(items)
    assert max(counts.values()) <= len(NOTE_QUERIES) / 3


def test_synthetic_corpus_parses_into_the_asked_number_of_chunks(tmp_path):
    """bench_retrieval's synthetic corpus is real sample files: every generated item is one parsed chunk."""
    import random
    import sys

    sys.path.insert(0, str(ROOT / "evals"))
    from bench_retrieval import build_synthetic

    build_synthetic(tmp_path / "synthetic", 123, random.Random(3))
    corpus = load_corpus(tmp_path / "synthetic")
    assert corpus.problems == []
    assert len(corpus.files) == 3 and len(corpus.samples) == 13
    assert len([c for c in corpus.chunks() if "#" not in c.id]) == len(corpus.items) == 123  # no item was split
    assert all(item.body and len(item.text) <= 600 for item in corpus.items)
