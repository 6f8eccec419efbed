"""The rubric grader (pipeline/evaluation/judge.py): the rubric file, malformed verdicts, retries, scores beside the
audit, never a gate."""

import json
import re

import pytest

from evalfakes import CRITERIA, fake_draft, remote_reply, verdict, writer
from fakes import ScriptedChat
from pipeline.evaluation.cases import load_cases
from pipeline.evaluation.score import KIND_NAMES
from pipeline.evaluation import runner as ev
from pipeline.cli import main

pytestmark = pytest.mark.usefixtures("audit_reports_only")  # the shipped gates, audit reporting only (conftest)


def test_rubric_file_renders_and_names_audit_kinds():
    from pipeline.evaluation.judge import load_rubric

    rubric = load_rubric()
    assert [c.id for c in rubric.criteria] == CRITERIA and rubric.pass_score == 4
    assert {k for c in rubric.criteria for k in c.audit_kinds} <= set(KIND_NAMES)
    messages = rubric.render("某局党组。1. 调研仅6次。", "（一）思想认识不到位。")
    assert "调研仅6次" in messages[1]["content"] and all(c in messages[0]["content"] for c in CRITERIA)
    assert rubric.schema()["required"] == CRITERIA


@pytest.mark.parametrize("reply, why", [
    ("不是 JSON", "不是一个 JSON 对象"),
    (verdict({c: 4 for c in CRITERIA[:-1]}), "缺少 headings"),
    (verdict({**{c: 4 for c in CRITERIA}, "causes": 7}), "causes 的 score 应是 1 到 5 的整数，收到 7"),
    (verdict({**{c: 4 for c in CRITERIA}, "voice": 0}), "收到 0"),
    (verdict({**{c: 4 for c in CRITERIA}, "voice": "4"}), "收到 \"4\""),
    (verdict({c: 4 for c in CRITERIA}, reason=" "), "缺少一句理由"),
])
def test_judge_rejects_malformed_and_out_of_range(reply, why):
    from pipeline.evaluation.judge import load_rubric, parse_verdict

    with pytest.raises(ValueError, match=re.escape(why)):
        parse_verdict(reply, load_rubric())


def test_judge_retries_with_the_error_then_gives_up():
    from pipeline.evaluation.judge import judge_draft, load_rubric, parse_verdict

    rubric = load_rubric()
    fenced = "```json\n" + verdict({c: 3 for c in CRITERIA}, reason="第一条\n只写了措施") + "\n```"
    assert parse_verdict(fenced, rubric)["grounded"] == {"score": 3, "reason": "第一条 只写了措施"}
    chat = ScriptedChat(["{broken", verdict({**{c: 4 for c in CRITERIA}, "grounded": 9}), verdict({c: 4 for c in CRITERIA})])
    got = judge_draft(chat, rubric, "说明", "初稿")
    assert got["attempts"] == 3 and got["scores"]["headings"]["score"] == 4
    assert "grounded 的 score 应是 1 到 5 的整数，收到 9" in chat.calls[2]["messages"][-1]["content"]
    assert chat.calls[0]["schema"] == rubric.schema() and chat.calls[0]["temperature"] == 0.0
    bad = judge_draft(ScriptedChat(["{broken"] * 3), rubric, "说明", "初稿")
    assert "3 次输出都不合格" in bad["error"] and bad["last"] == "{broken" and "scores" not in bad


def test_judge_scores_every_draft_agrees_with_audit_is_cached_and_never_gates(cases_dir, tmp_path, two_models, audited, capsys):
    replies = {"bad": 0}

    def judge_reply(body):  # the first verdict asked is out of range, the second malformed; valid after feedback
        if "评分标准" in body["messages"][1]["content"] and len(body["messages"]) == 2 and replies["bad"] < 2:
            replies["bad"] += 1
            return verdict({c: 6 for c in CRITERIA}) if replies["bad"] == 1 else "{oops"
        return remote_reply(body)

    two_models.endpoint.respond = judge_reply
    out = tmp_path / "j.json"
    args = ["eval", "--cases", str(cases_dir), "--compare", "embedded=embedded", "--compare",
            f"remote={two_models.endpoint.url}@judge-72b", "--judge", "remote", "--json", str(out),
            "--report", str(tmp_path / "j.md")]
    assert main(args) == 0  # scores of 2 fail nothing: the judge never gates
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["judge"]["model"]["model"] == "judge-72b" and set(data["judge"]["criteria"]) == set(CRITERIA)
    for run in data["models"].values():
        j = run["summary"]["judge"]
        assert j["judged"] == 2 and j["unjudged"] == 0
        assert {e["id"]: e["judge"]["scores"]["grounded"]["score"] for e in run["entries"]} == {"bureau": 2, "school": 5}
        # the audit finds no `unsupported` anywhere, a remedy in bureau's draft only, a heading in both;
        # the judge gives bureau 2 (fails) and school 5 (meets)
        assert j["agreement"]["criteria"]["grounded"] == {"pairs": 2, "agree": 1, "rate": 0.5}
        assert j["agreement"]["criteria"]["causes"] == {"pairs": 2, "agree": 2, "rate": 1.0}
        assert j["agreement"]["criteria"]["headings"]["agree"] == 1
    retried = [e["judge"]["attempts"] for run in data["models"].values() for e in run["entries"]]
    assert sorted(retried) == [1, 1, 2, 2]
    assert "评分模型 remote（仅供参考，不作门槛）" in capsys.readouterr().out
    md = (tmp_path / "j.md").read_text(encoding="utf-8")
    assert "## 评分模型 remote（仅供参考，不作门槛）" in md and "| 与体裁审查一致 |" in md
    asked = len(two_models.endpoint.requests)
    assert main(args) == 0 and len(two_models.endpoint.requests) == asked  # drafts and verdicts from the cache


def test_judge_name_must_be_known_and_hosted_models_need_a_key(cases_dir, two_models, capsys):
    assert main(["eval", "--cases", str(cases_dir), "--compare", "a=embedded", "--judge", "nobody"]) == 2
    assert "--judge「nobody」" in capsys.readouterr().err
    assert main(["eval", "--cases", str(cases_dir), "--compare", "a=embedded", "--judge", "ds=https://api.deepseek.com/v1"]) == 2
    assert "请设置 POXI_API_KEY_DS 或 POXI_API_KEY" in capsys.readouterr().err
    assert not two_models.embedded.calls  # refused before drafting anything


def test_judge_on_a_single_model_run(cases_dir, config, tmp_path):
    from pipeline.evaluation.models import ModelSpec

    data = ev.run_eval(load_cases(cases_dir), config, chat=writer(), draft_fn=fake_draft)
    judge = ScriptedChat([verdict({c: 4 for c in CRITERIA}), "不合格"] + ["{}"] * 2)
    ev.run_judge(data, config, ModelSpec("strong", "http://127.0.0.1:9/v1", "big"), chat=judge)
    j = data["summary"]["judge"]
    assert j["judged"] == 1 and j["unjudged"] == 1 and j["means"]["grounded"] == 4.0
    assert data["summary"]["passed"]  # an unjudged draft fails nothing
    assert "评分模型（仅供参考）：评了 1 篇（1 篇输出不合格）" in ev.format_table(data)
    ev.write_report(data, tmp_path / "r.md")
    report = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "- grounded：4 分——依据初稿原文判断" in report and "未能评分：评分模型 3 次输出都不合格" in report
