"""Argument moves: frames mined from the corpus, their grammar, the checks on a fill, and the fill loop."""

import re

import pytest

from fakes import HashEmbedder, ScriptedChat, fill_move
from pipeline.checks.audit import Auditor
from pipeline.drafting.chain import draft
from pipeline.drafting.links import WORD
from pipeline.config import load_config
from pipeline.checks.copycheck import CopyIndex
from pipeline.corpus.samples import DEFAULT_CORPUS, load_corpus
from pipeline.errors import InputError
from pipeline.drafting.moves import (Frame, fill_failures, fill_schema, load_frames, parroting, pick_frames, problem_object,
                            read_fill, shown)

from test_chain import NOTE, section_reply

HOW_WHY = Frame("how_why", "对“如何{a}”考虑得多，对“为何{b}”思考得少", {"a": (2, 10), "b": (2, 10)}, {}, ("x",))
IMPORTANCE = Frame("importance", "{subject}对{object}的重要性认识不足，思想上没有把{object}当作{a}", {"a": (2, 8)}, {}, ("x",))


@pytest.fixture
def config(tmp_path):
    return load_config({"home": tmp_path / "home", "embedder": HashEmbedder.name, "cache": tmp_path / "cache"})


def test_every_shipped_frame_occurs_in_the_items_it_names_and_one_that_does_not_occur_is_dropped(tmp_path):
    items = load_corpus().items
    frames = load_frames(items)
    assert len(frames) >= 5 and {"importance", "how_why", "heavy_light", "not_really", "slack"} <= {f.id for f in frames}
    spec = tmp_path / "frames.yaml"
    spec.write_text("frames:\n  - {id: made_up, find: '从未出现过的句式', template: '{a}', slots: {a: [2, 4]}}\n"
                    "  - {id: how_why, find: '考虑得多', template: '{a}', slots: {a: [2, 4]}}\n", encoding="utf-8")
    assert [f.id for f in load_frames(items, spec)] == ["how_why"]
    texts = {i.id: i.text for i in items}
    for frame in frames:
        assert frame.items and all(i in texts for i in frame.items)


def test_frames_follow_the_retrieved_items_best_first_and_serve_one_move_a_draft():
    a, b = Frame("a", "{a}", {"a": (2, 4)}, {}, ("i3", "i9")), Frame("b", "{a}", {"a": (2, 4)}, {}, ("i1",))
    c = Frame("c", "{a}", {"a": (2, 4)}, {}, ("i7",))
    assert [f.id for f in pick_frames([a, b, c], ["i1", "i2", "i3"], set(), 2)] == ["b", "a"]
    assert [f.id for f in pick_frames([a, b, c], ["i1", "i2", "i3"], {"b"}, 2)] == ["a"]
    assert pick_frames([a, b, c], ["i2"], set(), 2) == []


@pytest.mark.parametrize("title, expected", [("理论学习流于形式", "理论学习"), ("调查研究不深入", "调查研究"),
                                             ("校园食堂监管有漏洞", "校园食堂监管"), ("班子成员深入基层调研少", "深入基层调研"),
                                             ("落实“一岗双责”不到位", ""), ("老旧小区加装电梯推进慢", ""), ("不够", ""),
                                             ('课后服务收费"一刀切"不规范', ""), ('落实"双减"有偏差', "落实“双减”"), ("3个农田项目验收超时", "农田项目验收"), ("110接处警有推诿", "接处警")])
def test_the_object_of_a_problem_is_its_own_words_before_the_judgement(title, expected):
    assert problem_object(title, WORD) == expected


def test_the_grammar_fixes_the_frame_and_bounds_each_slot():
    fixed = {"subject": "班子", "object": "网格化监管"}
    pattern = fill_schema(IMPORTANCE, fixed, WORD)["properties"]["句子"]["pattern"]
    good = "班子对网格化监管的重要性认识不足，思想上没有把网格化监管当作硬任务"
    assert re.fullmatch(pattern[1:-1], good) and read_fill(good, IMPORTANCE, fixed, WORD) == {"a": "硬任务"}
    for bad in ("班子对网格化监管的重要性认识不足，思想上没有把网格化监管当作一项必须年年抓紧抓好的硬任务",
                "班子对理论学习的重要性认识不足，思想上没有把网格化监管当作硬任务", good + "，导致监管缺位"):
        assert not re.fullmatch(pattern[1:-1], bad) and read_fill(bad, IMPORTANCE, fixed, WORD) is None
    assert shown(HOW_WHY, fixed) == "对“如何（甲）”考虑得多，对“为何（乙）”思考得少"


def test_a_slot_that_pours_in_the_thinking_or_retells_the_note_is_parroting():
    note = "网格化监管不到位，食品小作坊监管有盲区"
    roots = ["抓落实一抓到底的劲头不足"]
    assert parroting({"a": "抓落实的劲头"}, roots, note, 8)
    assert parroting({"a": "食品小作坊监管有盲区"}, roots, note, 8)
    assert parroting({"a": "加强监管", "b": "加强监管"}, roots, note, 8)
    assert not parroting({"a": "加强子公司监管", "b": "放松监管"}, roots, note, 8)


def test_a_fill_that_copies_a_sample_sentence_fails_and_one_in_the_units_terms_passes(tmp_path):
    note = "市城投集团党委，2024年民主生活会。问题：1. 对子公司监管不到位，2家子公司投资决策不规范。"
    auditor, index = Auditor(note_text=note), CopyIndex.load(DEFAULT_CORPUS, tmp_path)
    heading, links = "管党治党的责任意识不强", "对子公司监管不到位，根子在于班子管党治党的责任意识不强。"
    args = (["管党治党的责任意识不强"], heading, "", links, note, auditor, index, [], [])
    copied = "对“如何做事”考虑得多，对“为何而做”思考得少"
    own = "对“如何加强子公司监管”考虑得多，对“为何放松监管”思考得少"
    assert "copied" in fill_failures(copied, read_fill(copied, HOW_WHY, {}, WORD), *args)
    assert fill_failures(own, read_fill(own, HOW_WHY, {}, WORD), *args) == []
    effect = "对“如何追责”考虑得多，对“为何导致损失”思考得少"
    assert "effect" in fill_failures(effect, read_fill(effect, HOW_WHY, {}, WORD), *args)


def test_a_failing_fill_is_written_again_with_another_seed_then_cut_and_the_section_keeps_its_links(config):
    def parrot(messages, schema):  # pours the section's thinking into every slot, whatever it is asked
        root = re.search(r"思想根子是“([^”]+)”", messages[0]["content"]).group(1)
        text = fill_move(messages, schema)
        return re.sub("按时完成|听取意见|跟踪问效", re.sub(r"\W", "", root)[:4], text)

    chat = ScriptedChat([section_reply(n) for n in range(5)], fill=parrot)
    result = draft(NOTE, config, chat=chat, embedder=HashEmbedder(), angles="retrieved")
    moves = [m for s in result.sections for m in s["moves"]]
    called = [m for m in moves if m["attempts"]]
    assert called and all(not m["text"] and m["first_failures"] for m in called)
    assert any("parrot" in m["first_failures"] for m in called)
    tried = [m for m in moves if len(m["attempts"]) == 2]
    assert tried and all(a["attempt"] == k for m in tried for k, a in enumerate(m["attempts"]))
    retries = [(c["seed"], c["temperature"]) for c in chat.move_calls if c["seed"] is not None]
    assert retries and len(set(retries)) == len(retries) and all(t > 0 for _, t in retries)
    for section, line in zip(result.sections, result.text.split("\n")):
        assert all(root in line for root in section["roots"])  # the links stand whatever the moves did
    assert result.stats["moves_kept"] == sum(1 for m in moves if m["text"]) and not any(m["text"] for m in called)
    assert result.stats["first_failed_moves"] == sum(1 for m in moves if m["first_failures"])


def test_moves_are_off_unless_configured(tmp_path):
    base = {"home": tmp_path / "home", "embedder": HashEmbedder.name, "cache": tmp_path / "cache"}
    chat = ScriptedChat([section_reply(n) for n in range(6)])
    draft(NOTE, load_config(base), chat=chat, embedder=HashEmbedder())
    assert not chat.move_calls
    chat = ScriptedChat([section_reply(n) for n in range(6)])
    draft(NOTE, load_config({**base, "moves": "retrieved"}), chat=chat, embedder=HashEmbedder())
    assert chat.move_calls
    with pytest.raises(InputError):
        load_config({**base, "moves": "some"})
