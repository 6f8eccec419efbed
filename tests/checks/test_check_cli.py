"""`poxi check` end to end: exit codes, the JSON shape, encodings and .docx, the report's marks, the genre audit."""

import json

import pytest

from conftest import DATA, ROOT
from pipeline.checks.runner import check_text, render_report
from pipeline.cli import main

DRAFTS = DATA / "drafts"
NOTE = str(DRAFTS / "note.txt")
GOOD = DRAFTS / "good_audited.txt"  # good_paren.txt passes copy and structure but invents details (audit)
EXAMPLE = DRAFTS / "audit_example.txt"  # the sentences of issue 9's table, for the example note
EXAMPLE_NOTE = DATA.parent.parent / "evals" / "example-note.txt"


def run(capsys, *argv):
    code = main(["check", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_good_draft_exits_0(capsys):
    code, out, _ = run(capsys, GOOD, "--note", NOTE)
    assert code == 0 and "检查结果：通过" in out and "三、体裁审查：通过" in out


def test_audit_alone_fails_a_draft(capsys):
    """good_paren.txt copies nothing and is complete, but it invents details the note never gave."""
    code, out, _ = run(capsys, DRAFTS / "good_paren.txt", "--note", NOTE, "--json")
    data = json.loads(out)
    assert code == 1 and data["copy"]["passed"] and data["structure"]["passed"]
    assert data["audit"]["passed"] is False and data["audit"]["counts"]["unsupported"] >= 1


def test_example_draft_reports_at_least_six_kinds_with_spans(capsys):
    code, out, _ = run(capsys, EXAMPLE, "--note", EXAMPLE_NOTE, "--json")
    audit = json.loads(out)["audit"]
    text = EXAMPLE.read_text(encoding="utf-8")
    findings = [f for s in audit["sections"] for f in s["findings"]]
    assert code == 1 and [s["number"] for s in audit["sections"]] == [1, 2, 3, 4]
    assert {f["kind"] for f in findings} >= {"unsupported", "remedy", "defence", "echo", "register", "heading", "residue", "repeat"}
    assert all(text[f["start"] : f["end"]] == f["text"] and f["reason"] for f in findings)
    assert sum(audit["counts"].values()) == len(findings)


def test_report_groups_audit_findings_per_section(capsys):
    code, out, _ = run(capsys, EXAMPLE, "--note", EXAMPLE_NOTE)
    audit = out[out.index("三、体裁审查：未通过") :]
    assert code == 1
    assert audit.index("第 1 条") < audit.index("[提示词]") < audit.index("第 2 条") < audit.index("[列表残留]")
    assert "“公司”是企业用语" in audit and "[重复]" in audit.split("第 4 条")[1]


def test_schema_fail_kinds_tunes_the_audit(capsys, tmp_path):
    schema = (ROOT / "corpus" / "schema.yaml").read_text(encoding="utf-8")
    lenient = tmp_path / "schema.yaml"
    lenient.write_text(schema.replace("fail_kinds: [unsupported,", "fail_kinds: [").replace(", rootless]", "]"), encoding="utf-8")
    (tmp_path / "stock_phrases.yaml").write_text((ROOT / "corpus" / "stock_phrases.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    code, out, _ = run(capsys, DRAFTS / "good_paren.txt", "--note", NOTE, "--schema", lenient)
    assert code == 0 and "三、体裁审查：通过" in out and "[无据]" in out  # reported, not failing
    broken = tmp_path / "bad.yaml"
    broken.write_text(schema.replace("fail_kinds: [unsupported,", "fail_kinds: [made_up,"), encoding="utf-8")
    code, _, err = run(capsys, GOOD, "--schema", broken)
    assert code == 2 and "made_up" in err


@pytest.mark.parametrize("name", ["broken_copied.txt", "broken_skipped_number.txt", "broken_missing_problem.txt"])
def test_broken_draft_exits_1(capsys, name):
    code, out, _ = run(capsys, DRAFTS / name, "--note", NOTE)
    assert code == 1 and "未通过" in out


def test_json_shape(capsys):
    code, out, _ = run(capsys, DRAFTS / "broken_copied.txt", "--note", NOTE, "--json")
    data = json.loads(out)
    assert code == 1 and data["passed"] is False
    assert set(data) >= {"passed", "copy", "structure"}
    assert isinstance(data["copy"]["ratio"], float) and 0 < data["copy"]["ratio"] < 0.2
    flag = data["copy"]["copied"][0]
    assert set(flag) >= {"sentence", "position", "start", "end", "source_id", "source_text", "longest", "containment", "runs"}
    assert flag["source_id"] == "seed-2021-dangshi/01/1" and flag["longest"] >= 13
    text = (DRAFTS / "broken_copied.txt").read_text(encoding="utf-8")
    assert text[flag["start"] : flag["end"]] == flag["sentence"]
    assert data["structure"]["passed"] is True and data["structure"]["problems"] == []
    assert set(data["audit"]) == {"passed", "counts", "sections"}


def test_report_marks_copied_runs(tmp_path):
    text = (DRAFTS / "broken_copied.txt").read_text(encoding="utf-8")
    result = check_text(text, cache_dir=tmp_path)
    report = render_report(result, text)
    assert "【对理论学习的紧迫性" in report and "seed-2021-dangshi/01/1" in report


@pytest.mark.parametrize("encoding", ["gbk", "utf-16", "utf-8-sig"])
def test_reads_other_encodings(capsys, tmp_path, encoding):
    path = tmp_path / "draft.txt"
    path.write_bytes(GOOD.read_text(encoding="utf-8").encode(encoding))
    assert run(capsys, path)[0] == 0


def test_reads_docx(capsys, tmp_path):
    from docx import Document

    document = Document()
    for line in GOOD.read_text(encoding="utf-8").split("\n"):
        document.add_paragraph(line)
    document.save(tmp_path / "draft.docx")
    assert run(capsys, tmp_path / "draft.docx", "--note", NOTE)[0] == 0


@pytest.mark.parametrize("make", ["missing", "empty", "binary", "dir", "bad_note"])
def test_unusable_input_exits_2(capsys, tmp_path, make):
    path = tmp_path / "draft.txt"
    extra = []
    if make == "empty":
        path.write_text("  \n", encoding="utf-8")
    elif make == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif make == "dir":
        path = tmp_path
    elif make == "bad_note":
        path = DRAFTS / "good_paren.txt"
        extra = ["--note", tmp_path / "nope.txt"]
    code, out, err = run(capsys, path, *extra)
    assert code == 2 and err.startswith("错误：") and "Traceback" not in err


def test_broken_schema_exits_2(capsys, tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text("sections: [\n", encoding="utf-8")
    code, _, err = run(capsys, DRAFTS / "good_paren.txt", "--schema", schema)
    assert code == 2 and "schema" in err


def test_quotation_a_sample_also_quotes_is_reported_not_copied(tmp_path):
    quote = ("习近平总书记强调，“必须增强政治意识，善于从政治上看问题，善于把握政治大局，不断提高政治判断力、政治领悟力、政治执行力。”"
             "对照这一要求，我们在审批工作中就事论事多，从政治上考量少。")
    text = GOOD.read_text(encoding="utf-8").rstrip() + quote
    result = check_text(text, cache_dir=tmp_path)
    data = result.to_dict()["copy"]
    assert data["copied"] == [] and len(data["quotations"]) == 1
    assert "政治执行力" in data["quotations"][0]["text"] and data["quotations"][0]["source_id"].endswith("08/2")
    assert "引用习近平总书记原话 1 处" in render_report(result, text)


def test_what_the_caller_holds_is_not_read_again(tmp_path, monkeypatch):
    """Given the parsed note, the schema and the copy index, check_text reads none of them again."""
    from pipeline.checks import runner, structure
    from pipeline.checks.copycheck import CopyIndex
    from pipeline.corpus.samples import DEFAULT_CORPUS
    from pipeline.note.reader import parse_note

    text, note_text = GOOD.read_text(encoding="utf-8"), (DRAFTS / "note.txt").read_text(encoding="utf-8")
    note = parse_note(note_text)
    as_written = check_text(text, note_text=note_text, cache_dir=tmp_path).to_dict()
    as_parsed = check_text(text, note_text=note.text, cache_dir=tmp_path).to_dict()
    held = {"schema": structure.load_schema(), "copy_index": CopyIndex.load(DEFAULT_CORPUS, tmp_path)}

    def read_again(*args, **kwargs):
        raise AssertionError("read again")

    for owner, name in ((runner, "parse_note"), (runner, "load_schema"), (runner, "find_schema"), (structure, "parse_note"),
                        (CopyIndex, "load")):
        monkeypatch.setattr(owner, name, read_again)
    assert check_text(text, note_text=note_text, note=note, cache_dir=tmp_path, **held).to_dict() == as_written
    assert check_text(text, note=note, cache_dir=tmp_path, **held).to_dict() == as_parsed
