"""CachedChat on disk: a hit replays the reply, the key covers everything that shapes it."""

import pytest

from fakes import ScriptedChat
from pipeline.cache import CachedChat, cache_key
from pipeline.config import load_config

MSGS = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"}]


# -- response cache --------------------------------------------------------------------------------


def test_cache_miss_then_hit_replays_tokens(tmp_path):
    inner = ScriptedChat(["第一次回答"])
    cached = CachedChat(inner, tmp_path, {"temperature": 0.3, "seed": 42})
    first = cached.complete(MSGS, max_tokens=100)
    pieces = []
    second = cached.complete(MSGS, max_tokens=100, on_token=pieces.append)
    assert (cached.misses, cached.hits) == (1, 1) and len(inner.calls) == 1
    assert second.text == first.text == "".join(pieces) == "第一次回答"
    assert (second.prompt_tokens, second.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert CachedChat(ScriptedChat([]), tmp_path, {"seed": 42, "temperature": 0.3}).complete(MSGS, max_tokens=100).text == "第一次回答"


@pytest.mark.parametrize("change", [
    {"messages": [{"role": "user", "content": "你好！"}]}, {"max_tokens": 99}, {"json_mode": True},
    {"settings": {"temperature": 0.3, "seed": 43}}, {"avoid": ["重视"]},
])
def test_cache_key_covers_messages_and_settings(tmp_path, change):
    base = {"messages": MSGS, "max_tokens": 100, "json_mode": False, "settings": {"temperature": 0.3, "seed": 42},
            "avoid": None}
    CachedChat(ScriptedChat(["a"]), tmp_path, base["settings"]).complete(base["messages"], max_tokens=100)
    args = {**base, **change}
    inner = ScriptedChat(["b"])
    result = CachedChat(inner, tmp_path, args["settings"]).complete(
        args["messages"], max_tokens=args["max_tokens"], json_mode=args["json_mode"], avoid=args["avoid"])
    assert result.text == "b" and len(inner.calls) == 1


def test_cache_key_depends_on_model_name():
    assert cache_key("a", {}, MSGS) != cache_key("b", {}, MSGS)
    assert cache_key("a", {"x": 1, "y": 2}, MSGS) == cache_key("a", {"y": 2, "x": 1}, MSGS)


def test_broken_cache_entry_is_a_miss(tmp_path):
    cached = CachedChat(ScriptedChat(["x", "y"]), tmp_path)
    cached.complete(MSGS)
    for entry in tmp_path.rglob("*.json"):
        entry.write_text("{broken")
    assert cached.complete(MSGS).text == "y" and cached.misses == 2


def test_the_eval_cache_keys_on_a_frequency_penalty_only_when_one_is_set(tmp_path):
    """Entries written before the setting existed still hit; a run with a penalty never reuses one without."""
    from pipeline.evaluation.runner import _cached

    plain = _cached(ScriptedChat([]), load_config({"cache": tmp_path}), True)
    penalised = _cached(ScriptedChat([]), load_config({"cache": tmp_path, "frequency_penalty": 0.3}), True)
    assert "frequency_penalty" not in plain.settings and penalised.settings["frequency_penalty"] == 0.3
