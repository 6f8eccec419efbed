"""Eval scoring (pipeline/evaluation/score.py): every gate passes a good draft and fails a spoiled one for the right
reason; coverage, figures, similarity, the audit gate."""

import re

import pytest

from evalfakes import NOTE_A, NOTE_B, _copy_corpus, _score, fake_audit, good_draft
from pipeline.evaluation.cases import load_cases, load_gates
from pipeline.evaluation.score import KIND_NAMES, corpus_similarity, coverage, cross_similarity, note_figures, run_check, score_case
from pipeline.config import load_config

pytestmark = pytest.mark.usefixtures("audit_reports_only")  # the shipped gates, audit reporting only (conftest)


def test_good_draft_passes_every_gate(cases_dir, config):
    for case in load_cases(cases_dir):
        scored = _score(case, good_draft(case.note), config)
        assert scored["reasons"] == [], (case.id, scored["reasons"])
        assert scored["figures"]["coverage"] == 1.0 and scored["figures"]["copied"] == 0
        assert scored["figures"]["sections"] == 5 and scored["figures"]["facts_used"] == 1.0


MUTATIONS = {  # name -> (change to a good draft, words the failure reason must contain)
    "missed-problem": (lambda t: t.replace("不动产登记", "窗口办事"), ["问题覆盖", "不动产登记"]),
    "copied": (_copy_corpus, ["抄袭语料句子 1 句"]),
    "too-short": (lambda t: "\n".join(t.splitlines()[:4])[:190], ["字数"]),
    "few-sections": (lambda t: "\n".join(t.splitlines()[:3]), ["编号段落 3 个"]),
    "banned": (lambda t: t.replace("思想根源", "思想根源dangshi", 1), ["不应有", "dangshi"]),
    "no-facts": (lambda t: re.sub(r"\d+", "若干", t), ["引用情况说明中的数据 0/"]),
    "markdown": (lambda t: "**" + t, ["结构检查未通过"]),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_gate_fails_for_the_right_reason(cases_dir, config, name):
    case = load_cases(cases_dir, only=["bureau"])[0]
    change, words = MUTATIONS[name]
    reasons = _score(case, change(good_draft(case.note)), config)["reasons"]
    assert reasons, name
    assert any(all(w in r for w in words) for r in reasons), reasons


def test_coverage_matches_variants_not_scattered_bigrams():
    draft = "班子成员下基层开展调研太少。审批拖延。"
    got = {c["problem"]: c["addressed"] for c in coverage(draft, ["下基层调研", "审批|审批超时", "耕地保护"])}
    assert got == {"下基层调研": True, "审批|审批超时": True, "耕地保护": False}
    # bigrams of a phrase spread over different sentences do not count
    assert not coverage("耕种季节忙。地方保护多。", ["耕地保护"])[0]["addressed"]


def test_note_figures_skip_years_and_markers():
    assert note_figures("2024年会议\n1. 调研仅6次\n2）3个项目超时，金额8.6万元") == ["3", "6", "8.6"]


def test_cross_similarity_flags_identical_drafts_and_corpus_is_low():
    same = good_draft(NOTE_A)
    sim = cross_similarity({"a": same, "b": same, "c": good_draft(NOTE_B)})
    assert sim["max_jaccard"] == 1.0 and sorted(sim["closest"]) == ["a", "b"] and sim["pairs"] == 3
    corpus = corpus_similarity(load_config().corpus)
    assert corpus["pairs"] == 45 and corpus["max_jaccard"] < 0.1


@pytest.mark.parametrize("mode", ["report", "gate"])
def test_audit_gate_reports_or_fails(cases_dir, config, mode):
    case = load_cases(cases_dir, only=["bureau"])[0]
    text = good_draft(case.note)
    check = {**run_check(text, case.note, config), "audit": fake_audit(text)}
    gates = {**load_gates(), "audit": {"max_findings": 0, "mode": mode}}
    scored = score_case(case, text, check, gates)
    assert scored["figures"]["audit_findings"] == 2  # one remedy, one heading
    found = [r for r in scored["reasons"] + scored["audit"]["notes"] if "体裁审查" in r]
    assert found and f"{KIND_NAMES['remedy']}（remedy）1 处" in found[0]
    assert (found[0] in scored["reasons"]) == (mode == "gate")
    # a per-kind limit lets one kind through
    lenient = {**gates, "audit": {"max_findings": {"remedy": 1, "heading": 1}, "mode": "gate"}}
    assert not any("体裁审查" in r for r in score_case(case, text, check, lenient)["reasons"])
    # a check without an audit: nothing counted, nothing failed
    plain = score_case(case, text, {k: v for k, v in check.items() if k != "audit"}, gates)
    assert plain["figures"]["audit_findings"] is None and plain["audit"]["counts"] is None
