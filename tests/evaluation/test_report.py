"""Eval reports (pipeline/evaluation/report.py): JUnit for a failing suite, copied sentences and audit findings in
the Markdown report."""

import xml.etree.ElementTree as ET

import pytest

from evalfakes import NOTE_A, _copy_corpus, fake_draft, good_draft, writer
from pipeline.evaluation.cases import load_cases
from pipeline.evaluation.score import KIND_NAMES
from pipeline.evaluation import runner as ev

pytestmark = pytest.mark.usefixtures("audit_reports_only")  # the shipped gates, audit reporting only (conftest)


def test_identical_drafts_for_different_units_fail_the_suite(cases_dir, config, tmp_path):
    data = ev.run_eval(load_cases(cases_dir), config, chat=writer(lambda note: good_draft(NOTE_A)),
                       draft_fn=fake_draft)
    s = data["summary"]
    assert not s["passed"] and any("过于相似" in f for f in s["suite_failures"])
    junit = tmp_path / "j.xml"
    ev.write_junit(data, junit)
    suite = ET.parse(junit).getroot().find("testsuite")
    failures = {c.get("name"): c.find("failure") for c in suite.iter("testcase")}
    assert failures["cross-draft-similarity"] is not None and "过于相似" in failures["cross-draft-similarity"].get("message")
    assert failures["school"] is not None and "思政课" in failures["school"].get("message")  # wrong unit's draft
    assert failures["bureau"] is None and suite.get("tests") == "3" and suite.get("failures") == "2"


def test_report_marks_copied_sentences(cases_dir, config, tmp_path):
    data = ev.run_eval(load_cases(cases_dir, only=["bureau"]), config,
                       chat=writer(lambda note: _copy_corpus(good_draft(note))), draft_fn=fake_draft)
    report = tmp_path / "r.md"
    ev.write_report(data, report)
    text = report.read_text(encoding="utf-8")
    assert "<mark>" in text and "疑似抄袭 seed-2021-dangshi/" in text and "## bureau：未通过" in text
    assert "✓ 下基层调研" in text


def test_report_lists_audit_per_case_and_kind(cases_dir, config, tmp_path, audited):
    data = ev.run_eval(load_cases(cases_dir), config, chat=writer(), draft_fn=fake_draft)
    s = data["summary"]
    assert s["passed"]  # report mode: findings never fail a case
    assert s["audit"]["counts"]["remedy"] == 1 and s["audit"]["counts"]["heading"] == 2 and s["audit"]["total"] == 3
    assert s["audit"]["mode"] == "report" and s["audit"]["drafts"] == 2 and s["audit"]["clean"] == 0
    assert "体裁审查（仅报告，不影响通过）" in ev.format_table(data)
    ev.write_report(data, tmp_path / "r.md")
    report = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "## 体裁审查（按用例、类别）" in report and "| bureau | 0 | 1 |" in report
    label = KIND_NAMES["remedy"]
    assert f'<u title="写的是措施而非原因">班子成员</u>〔{label}〕' in report
