"""Roots that fit: the ranking on labelled problems, how the chain offers them, and the data's constraints."""

import re

import pytest
import yaml

from conftest import ROOT
from pipeline.drafting.plan import plan_sections, section_roots
from pipeline.corpus.samples import DimensionTagger
from pipeline.drafting.roots import OFFERED, RootRanker, bigrams, deal_roots, load_examples

TAGGER = DimensionTagger()
RANKER = RootRanker(TAGGER)
SET = yaml.safe_load((ROOT / "evals" / "root_fit.yaml").read_text(encoding="utf-8"))["problems"]
DIMENSION_OF = {r: d for d, rs in TAGGER.roots.items() for r in rs}


@pytest.mark.parametrize("problem, root", [
    ("招商中对企业提出的不合理要求有时迁就，怕影响签约", "怕得罪人的好人主义思想没有克服"),
    ("抓项目急于求成，重点项目手续没办齐就催着开工", "急于求成的心态没有克服"),
    ("科研诚信管理不严，有论文被撤稿", "诚实守信的意识不强"),
    ("节日期间收了企业老板送的土特产", "廉洁自律意识有所松懈"),
    ("窗口办事要跑好几趟，群众投诉多", "对群众的急难愁盼重视不够"),
])
def test_the_root_a_writer_would_name_ranks_first_or_second(problem, root):
    assert root in RANKER.rank(problem)[:2]


@pytest.mark.parametrize("problem, wrong", [
    ("科研诚信管理不严，有论文被撤稿", "对群众的急难愁盼重视不够"),
    ("干部队伍年龄老化，年轻干部储备不足", "学习的自觉性和主动性不强"),
    ("2个村级班子软弱涣散", "开拓进取意识不强"),
    ("有科室报销把关不严，被审计指出", "抓理论学习的紧迫感不强"),
])
def test_the_misfits_writers_struck_are_not_offered(problem, wrong):
    """The dealt roots a writer struck (issue 23) are not among the ranker's first two."""
    assert wrong not in RANKER.rank(problem)[:2]


def test_a_link_is_offered_fitting_roots_of_its_section_only_and_no_two_links_the_same():
    pool = TAGGER.roots["管党治党/纪律规矩"]
    texts = ["招商中对企业提出的不合理要求有时迁就", "有科室报销把关不严，被审计指出", "2个村级班子软弱涣散"]
    offers = section_roots(pool, 3, turn=5, texts=texts, tagger=TAGGER, most=2)
    assert [len(o) for o in offers] == [min(2, OFFERED)] * 3 and all(set(o) <= set(pool) for o in offers)
    flat = [r for o in offers for r in o]
    assert len(flat) == len(set(flat))
    assert offers[0][0] == "怕得罪人的好人主义思想没有克服" and offers[1][0] == "按制度办事的意识不强"
    assert section_roots(["a", "b", "c"], 2) == [["a", "c"], ["b"]]  # without problems: dealt as before


def test_deal_roots_gives_each_link_its_best_free_root_in_turn():
    assert deal_roots([["a", "b", "c"], ["a", "c", "b"]], 2) == [["a", "b"], ["c"]]
    assert deal_roots([["a"], ["a"]], 2) == [["a"], ["a"]]  # a pool too small still offers every link one


def test_plan_puts_a_problem_in_the_dimension_of_its_best_root():
    problems = [{"title": t, "facts": [], "text": t} for t in (
        "招商中对企业提出的不合理要求有时迁就", "抓项目急于求成，手续没办齐就催着开工",
        "节日期间收了企业老板送的土特产", "窗口办事要跑好几趟，群众投诉多")]
    plan = plan_sections(problems, TAGGER)
    home = {n: s["dimension"] for s in plan for n in s["problems"]}
    assert home[1] in ("管党治党/纪律规矩", "担当作为/开拓创新")  # 好人主义, or 斗争精神
    assert (home[2], home[3], home[4]) == ("政绩观", "廉洁自律", "宗旨意识/群众路线")


def test_equal_scores_turn_with_the_note():
    pool = TAGGER.roots["理论武装/理想信念"]
    assert RANKER.rank("", pool=pool, turn=0)[0] != RANKER.rank("", pool=pool, turn=1)[0]


def test_bigrams_and_examples_load():
    assert bigrams("迁就企业，怕") == {"迁就": 1, "就企": 1, "企业": 1}
    assert load_examples(ROOT / "no-such-file.yaml") == []


# the data


def test_every_dimension_has_six_roots_with_cues_and_each_root_names_a_thinking():
    from pipeline.checks.audit import Auditor
    from pipeline.config import load_config

    words = Auditor(load_config({}).corpus, "").rules["rootless"]["words"]
    assert set(TAGGER.roots) == set(TAGGER.names)
    for dimension, roots in TAGGER.roots.items():
        assert len(roots) >= 6 and len(set(roots)) == len(roots), dimension
    assert set(TAGGER.cues) == set(DIMENSION_OF)  # every root has cues, and no cue names a root that is not one
    for root in DIMENSION_OF:
        assert any(w in root for w in words) and "问题" not in root, root


def test_the_labelled_set_is_large_varied_and_names_only_known_roots():
    samples = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "corpus" / "samples").glob("*.txt"))
    assert len(SET) >= 150 and len({p["text"] for p in SET}) == len(SET)
    assert {p.get("round", 1) for p in SET} == {1, 2, 3}
    units = {p["unit"] for p in SET}
    for kind in ("党委", "党组", "党支部", "我", "银行", "医院", "镇", "村", "学校"):
        assert any(kind in u for u in units), kind
    for p in SET:
        assert p["accept"] and not set(p["accept"]) & set(p["reject"]), p["text"]
        assert set(p["accept"]) | set(p["reject"]) <= set(DIMENSION_OF), p["text"]
        assert p["dims"] == list(dict.fromkeys(DIMENSION_OF[r] for r in p["accept"])), p["text"]
        text = re.sub(r"\W", "", p["text"])
        assert not any(text[k : k + 10] in samples for k in range(len(text) - 9)), p["text"]  # not the samples' words


def test_the_ranker_examples_are_the_labelled_set_less_its_held_out_round():
    examples = load_examples()
    assert examples == [{"text": p["text"], "accept": p["accept"]} for p in SET if p.get("round") != 3]
