"""Eval baselines (pipeline/evaluation/baseline.py): regressions against an earlier run, margins, a partial baseline."""

import json

import pytest

from evalfakes import fake_draft, good_draft, writer
from pipeline.evaluation.baseline import compare_baseline, load_baseline
from pipeline.evaluation.cases import load_cases, load_gates
from pipeline.evaluation import runner as ev
from pipeline.errors import InputError

pytestmark = pytest.mark.usefixtures("audit_reports_only")  # the shipped gates, audit reporting only (conftest)


def test_baseline_detects_regressions(cases_dir, config, tmp_path):
    cases = load_cases(cases_dir)
    gates = load_gates()
    before = ev.run_eval(cases, config, chat=writer(), draft_fn=fake_draft, out_json=tmp_path / "base.json")
    baseline = load_baseline(tmp_path / "base.json")
    assert compare_baseline(before, baseline, gates["margins"]) == []
    worse = lambda note: good_draft(note).replace("思政课", "课堂教学")  # school now misses a problem
    after = ev.run_eval(cases, config, chat=writer(worse), draft_fn=fake_draft, use_cache=False)
    found = compare_baseline(after, baseline, gates["margins"])
    assert any("school 之前通过，现在未通过" in r for r in found)
    assert any("school 的 coverage 从 1.0 变为 0.75" in r for r in found)
    assert not any("bureau" in r for r in found)
    assert any("通过率" in r for r in found)
    # within the margin: a coverage drop of 0.25 is tolerated when the margin allows 0.3
    assert not any("coverage" in r for r in compare_baseline(after, baseline, {**gates["margins"], "coverage": 0.3}))
    (tmp_path / "partial.json").write_text(json.dumps({"entries": []}), encoding="utf-8")
    with pytest.raises(InputError, match="summary"):
        load_baseline(tmp_path / "partial.json")
