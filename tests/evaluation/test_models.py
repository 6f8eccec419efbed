"""Comparing models (pipeline/evaluation/models.py): --compare, the models list, a second prompt set beside the
default."""

import json
import re
import xml.etree.ElementTree as ET

import pytest

from evalfakes import fake_draft, prompt_copy, replace_config, writer
from pipeline.evaluation.cases import load_cases, load_gates
from pipeline.evaluation.score import KIND_NAMES
from pipeline.evaluation import runner as ev
from pipeline.cli import main
from pipeline.errors import InputError

pytestmark = pytest.mark.usefixtures("audit_reports_only")  # the shipped gates, audit reporting only (conftest)


def test_compare_two_models_writes_json_markdown_and_junit(cases_dir, tmp_path, two_models, audited, capsys):
    out = {k: tmp_path / f"cmp.{k}" for k in ("json", "xml", "md")}
    args = ["eval", "--cases", str(cases_dir), "--compare", "embedded=embedded",
            "--compare", f"remote={two_models.endpoint.url}@remote-7b", "--json", str(out["json"]),
            "--junit", str(out["xml"]), "--report", str(out["md"])]
    assert main(args) == 0
    table = capsys.readouterr().out
    label = KIND_NAMES["remedy"]
    assert re.search(r"embedded\s+2/2", table) and re.search(r"remote\s+2/2", table) and f"{label}（remedy）" in table

    data = json.loads(out["json"].read_text(encoding="utf-8"))
    assert data["complete"] and list(data["models"]) == ["embedded", "remote"] and data["cases"] == ["bureau", "school"]
    for name, run in data["models"].items():
        s = run["summary"]
        assert [e["id"] for e in run["entries"]] == ["bureau", "school"] and s["cases_passed"] == 2
        assert s["audit"]["counts"]["remedy"] == 1 and s["means"]["coverage"] == 1.0 and s["median_seconds"] is not None
        assert s["totals"]["prompt_tokens"] > 0 and s["cross"]["drafts"]["pairs"] == 1
    assert data["models"]["remote"]["spec"] == {"name": "remote", "base_url": two_models.endpoint.url,
                                                 "model": "remote-7b", "prompts_dir": None}
    assert data["models"]["remote"]["summary"]["cases"]["bureau"]["spread"]["sections"][1] == 4  # its own drafts
    assert data["models"]["embedded"]["summary"]["cases"]["bureau"]["spread"]["sections"][1] == 5
    sent = two_models.endpoint.requests
    assert len(sent) == 2 and {r["body"]["model"] for r in sent} == {"remote-7b"}
    assert all(r["body"]["temperature"] == 0.0 and r["body"]["seed"] == 42 for r in sent)
    assert sent[0]["auth"] == "Bearer k-remote" and len(two_models.embedded.calls) == 2  # the name's own key

    suites = ET.parse(out["xml"]).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["poxi-eval:embedded", "poxi-eval:remote"]
    assert all(s.get("tests") == "3" and s.get("failures") == "0" for s in suites)
    assert json.loads(suites[1].find("testcase").find("system-out").text)["audit"]["remedy"] == 1

    md = out["md"].read_text(encoding="utf-8")
    assert "| 模型 | 通过用例 | 审查发现 |" in md and "| embedded | 2/2 | 3 |" in md
    assert f"| {label}（remedy） | 1 | 1 |" in md and "| bureau · embedded |" in md
    assert md.count("<table>") == 2 and "<th>embedded</th><th>remote</th>" in md and "## school" in md
    assert "<u title=" in md and f"〔{label}〕" in md

    # the cache keys on the model: a rerun asks neither model again, and compared with itself nothing regressed
    assert main(args + ["--baseline", str(out["json"])]) == 0
    assert "退步" not in capsys.readouterr().out
    assert len(two_models.endpoint.requests) == 2 and len(two_models.embedded.calls) == 2


def test_compare_flags_and_models_list(tmp_path, config, monkeypatch):
    from pipeline.evaluation.models import key_var, parse_compare, plan_models, spec_config

    assert parse_compare("q=http://10.0.0.5:8000/v1@Qwen/Qwen2.5-7B-Instruct").model == "Qwen/Qwen2.5-7B-Instruct"
    assert parse_compare("o=http://127.0.0.1:11434/v1@qwen2.5:7b").base_url == "http://127.0.0.1:11434/v1"
    assert parse_compare("local=embedded").embedded and key_var("qwen-72b") == "POXI_API_KEY_QWEN_72B"
    for bad, why in (("nourl", "名称=接口地址"), ("x=ftp://a", "http(s)://"), ("x=embedded@m", "不能指定"), ("a b=embedded", "模型名称")):
        with pytest.raises(InputError, match=re.escape(why)):
            parse_compare(bad)
    gates = {**load_gates(), "models": [{"name": "e", "base_url": "embedded"}, {"name": "r", "base_url": "http://h:1/v1"}]}
    assert [s.name for s in plan_models(config, gates)] == ["e", "r"]
    assert [s.name for s in plan_models(config, gates, ["x=embedded"])] == ["x"]  # --compare wins
    with pytest.raises(InputError, match="重复"):
        plan_models(config, gates, ["x=embedded", "x=http://h:1/v1"])
    monkeypatch.setenv("POXI_API_KEY_R", "k-r")
    assert spec_config(config, plan_models(config, gates)[1]).api_key == "k-r"
    # --model/--base-url keep their meaning: without --compare or a models list, one model, named after it
    plain = replace_config(config, base_url="http://h:1/v1", model="m1")
    assert [(s.name, s.base_url, s.model) for s in plan_models(plain, load_gates())] == [("m1", "http://h:1/v1", "m1")]


def test_prompt_set_runs_beside_the_default(cases_dir, config, tmp_path):
    from pipeline.evaluation.models import plan_models

    names = sorted(p.stem for p in config.prompts_dir.glob("*.yaml"))
    with pytest.raises(InputError, match="缺少"):
        plan_models(config, load_gates(), prompts=str(prompt_copy(tmp_path / "a", drop=names[0])))
    folder = prompt_copy(tmp_path)
    specs = plan_models(config, load_gates(), ["m=embedded"], prompts=str(folder))
    assert [(s.name, s.prompts_dir) for s in specs] == [("m", None), ("m+prompts-b", folder.resolve())]
    seen = []

    def reads_prompts(note, cfg, *, chat=None, **kw):  # a chain that reads its prompt folder from the config
        seen.append(cfg.prompts_dir)
        result = fake_draft(note, cfg, chat=chat)
        result.text = result.text if cfg.prompts_dir == config.prompts_dir else result.text.replace("思想根源", "思想认识根源")
        return result

    cases = load_cases(cases_dir)
    data = ev.run_compare(cases, config, specs, draft_fn=reads_prompts, chat_for=lambda s, c: writer())
    assert seen == [config.prompts_dir] * 2 + [folder.resolve()] * 2 and data["warnings"] == []
    assert "思想认识根源" in data["models"]["m+prompts-b"]["entries"][0]["draft"]
    # a chain that ignores Config.prompts_dir makes the comparison void, and the run says so
    data = ev.run_compare(cases, config, specs, draft_fn=fake_draft, chat_for=lambda s, c: writer())
    assert "Config.prompts_dir" in data["warnings"][0]
