"""The genre audit (pipeline/audit.py): the labelled set's targets, issue 9's sentences, spans, the result's shape."""

import re

import pytest
import yaml

from conftest import ROOT
from evals.bench_audit import corpus_drafts, load_cases, predict, score
from pipeline.checks.audit import KINDS, AuditResult, Auditor, Finding, audit_text
from pipeline.errors import InputError
from pipeline.note.reader import parse_note

NOTES, CASES = load_cases()
AGRI = NOTES["agri"]


@pytest.fixture(scope="module")
def found():
    return predict(NOTES, CASES)


@pytest.fixture(scope="module")
def agri():
    return Auditor(note_text=AGRI)


def kinds(findings: list[Finding]) -> set[str]:
    return {f.kind for f in findings}


# -- the labelled set ------------------------------------------------------------------------------------

def test_set_is_big_enough():
    corpus = [c for c in CASES if c["note"] is None]
    clean = [c for c in CASES if c["id"].startswith(("clean-", "held-clean-"))]
    bad = [c for c in CASES if c["kinds"]]
    assert len(CASES) >= 120 and len(corpus) == 40 and len(clean) >= 30 and len(bad) >= 60
    for kind in KINDS:
        assert sum(kind in c["kinds"] for c in bad) >= 6, kind
    assert all(set(c["kinds"]) <= set(KINDS) and c["note"] in NOTES | {None: ""} for c in CASES)
    assert len({c["id"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("kind", KINDS)
def test_precision_and_recall_per_kind(found, kind):
    figures = score(CASES, found)[kind]
    assert figures["precision"] >= 0.9 and figures["recall"] >= 0.9, figures


def test_corpus_items_are_clean(found):
    corpus = [c for c in CASES if c["note"] is None]
    assert sum(len(found[c["id"]]) for c in corpus) <= 1
    assert sum(len(f) for f in corpus_drafts().values()) <= 1  # whole samples: no repeats across their items


@pytest.mark.parametrize("case", [c for c in CASES if c["kinds"]], ids=lambda c: c["id"])
def test_no_bad_section_passes(found, case):
    """The gate never passes a section a writer would throw away: at least one of its kinds is reported."""
    assert kinds(found[case["id"]]) & set(case["kinds"])


@pytest.mark.parametrize("case", [c for c in CASES if "clean-" in c["id"]], ids=lambda c: c["id"])
def test_tailored_clean_sections_have_no_style_findings(found, case):
    """Hard negatives (note figures, 还需/进一步 diagnoses, canonical terms): nothing but, rarely, `unsupported`."""
    assert kinds(found[case["id"]]) <= {"unsupported"}


# -- issue 9's sentences, verbatim ------------------------------------------------------------------------

@pytest.mark.parametrize("sentence, kind", [
    ("在农业政策的制定上，我们未能及时准确地把握最新的政策动态，导致政策执行不力。", "unsupported"),
    ("未按照规定将补贴资金存入专用账户。未及时公示补贴信息。", "unsupported"),
    ("因此，我们需要加强对理论武装的认识，提高学习的针对性和实效性。", "remedy"),
    ("如果能够加强作风建设，深入基层了解实情，那么这些问题将得到有效的解决。", "remedy"),
    ("虽然我们已经提前通知了所有参与单位，并且多次进行了现场检查和指导，但仍然有部分项目未能按时完成。", "defence"),
    ("本单位的问题和事实表明，班子对学习的认识不足。", "echo"),
    ("违反了公司纪律规矩，也损害了公司的声誉和利益。", "register"),
    ("存在以下几个问题：调查研究不深入：班子成员习惯于听汇报。", "residue"),
])
def test_issue_sentences(agri, sentence, kind):
    findings = agri.section("宗旨意识有所淡化", sentence)
    assert kind in kinds(findings)
    assert all(f"宗旨意识有所淡化。{sentence}"[f.start : f.end] == f.text for f in findings)


def test_issue_heading_and_repeat(agri):
    heading = "落实‘一岗双责’不到位，下属农机站违规发放补贴问题"
    assert "heading" in kinds(agri.section(heading, "班子对管党治党的认识不够深刻，对下属单位监督偏松。"))
    first = "班子对管党治党的认识不够深刻，落实“一岗双责”不到位。"
    assert "repeat" in kinds(agri.section("管党治党意识不强", first + "下属农机站出现2起违规发放补贴问题。" + first))


def test_invented_person_and_incident():
    hospital = Auditor(note_text=NOTES["hospital"])
    findings = hospital.section("廉洁意识有所淡化", "某位医生在一次检查中，接受了患者送来的红包。")
    assert [f.kind for f in findings] == ["unsupported"] and "红包" in findings[0].reason


# -- calibration details -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sentence", [
    "纪律落实情况的督促检查还需进一步加强。",  # a seed diagnosis, not a remedy
    "理论素养有待加强，学用结合仍需提升。",
    "班子对理论学习的重要性认识不足，全年中心组学习12次，其中8次是传达文件。",  # the note's figures
    "增强“四个意识”、坚定“四个自信”、做到“两个维护”的自觉性还不够强，宗旨意识有所淡化。",  # canonical terms
    "班子满足于已经取得的成绩，滋长了自满情绪，剖析导致这些问题的思想认识原因不够深入。",  # complacency is no defence
])
def test_hard_negatives(agri, sentence):
    assert agri.section("思想认识还不够到位", sentence) == []


def prompt_runs(n: int = 8) -> list[str]:
    """Runs of n characters from every prompt file that the corpus does not use."""
    corpus = re.sub(r"\W", "", "".join(c["heading"] + c["body"] for c in CASES if c["note"] is None))
    runs = []
    for path in sorted((ROOT / "prompts").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for value in (v for v in data.values() if isinstance(v, str)):
            for part in re.split(r"{{.*?}}|{%.*?%}|[^\w]", value):
                if len(part) >= n and re.search(r"[\u4e00-\u9fff]", part) and part[:n] not in corpus:
                    runs.append(part[:n])
    return runs[:12]


@pytest.mark.parametrize("run", prompt_runs())
def test_prompt_words_are_echoes(agri, run):
    assert "echo" in kinds(agri.section("宗旨意识有所淡化", f"班子对为民服务的认识不够深刻，{run}，农户投诉9起。"))


def test_business_words_allowed_for_a_company():
    company = Auditor(note_text=NOTES["company"])
    assert company.section("服务意识不强", "班子对客户需求的认识不深，客户投诉134件，员工服务意识不强。") == []


def test_no_note_no_unsupported():
    assert Auditor().section("宗旨意识有所淡化", "某位医生在一次检查中，接受了患者送来的红包。") == []


# -- whole drafts, the result, the schema ---------------------------------------------------------------------

DRAFT = (ROOT / "tests" / "data" / "drafts" / "audit_example.txt").read_text(encoding="utf-8")


def test_text_maps_spans_into_the_draft():
    result = audit_text(DRAFT, note_text=(ROOT / "evals" / "example-note.txt").read_text(encoding="utf-8"))
    assert isinstance(result, AuditResult) and not result.passed
    assert [s["number"] for s in result.sections] == [1, 2, 3, 4]
    assert all(DRAFT[f.start : f.end] == f.text for f in result.findings())
    assert len(kinds(result.findings())) >= 6
    repeat = [f for f in result.findings() if f.kind == "repeat"]
    assert len(repeat) == 1 and repeat[0].start > DRAFT.index("（四）") + 40  # the second occurrence only


def test_result_shape():
    result = audit_text(DRAFT, note_text=AGRI)
    data = result.to_dict()
    assert set(data) == {"passed", "counts", "sections"} and list(data["counts"]) == list(KINDS)
    assert sum(data["counts"].values()) == len(result.findings())
    finding = data["sections"][0]["findings"][0]
    assert set(finding) == {"kind", "text", "start", "end", "reason"} and finding["reason"]
    assert set(data["sections"][0]) == {"number", "heading", "findings"}


def test_fail_kinds_from_the_schema():
    text = "（一）宗旨意识有所淡化。班子对群众的感情不深。今后要切实增强宗旨意识。"
    assert audit_text(text, schema={"audit": {"fail_kinds": ["remedy"]}}).passed is False
    result = audit_text(text, schema={"audit": {"fail_kinds": ["repeat"]}})
    assert result.passed is True and result.counts()["remedy"] == 1
    with pytest.raises(InputError, match="made_up"):
        audit_text(text, schema={"audit": {"fail_kinds": ["made_up"]}})


def test_unnumbered_text_is_one_section():
    text = "班子对理论学习的认识不足。首先，学习缺乏计划；其次，研讨流于形式。"
    result = audit_text(text)
    assert [s["number"] for s in result.sections] == [0]
    assert all(text[f.start : f.end] == f.text for f in result.findings()) and "residue" in kinds(result.findings())


@pytest.mark.parametrize("content", ["remedy: {}\n", "unsupported: [\n"])
def test_broken_rules_file_is_an_input_error(tmp_path, content):
    path = tmp_path / "rules.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="审读规则文件"):
        Auditor(rules_path=path)


@pytest.mark.parametrize("name", sorted(NOTES))
def test_a_parsed_note_finds_what_its_text_finds(name):
    """The chain hands the Auditor its parsed Note: the same findings as the text, read once instead of twice."""
    text, note = NOTES[name], parse_note(NOTES[name])
    cases = [c for c in CASES if c["note"] == name]
    pairs = [(Auditor(note_text=text), Auditor(note_text=text, note=note)),  # as written, problems from the Note
             (Auditor(note_text=note.text), Auditor(note=note))]  # as the chain has it: the Note's own text
    for by_text, by_note in pairs:
        assert by_note.problems == by_text.problems and by_note.voice == by_text.voice
        for c in cases:
            assert by_note.section(c["heading"], c["body"], c["others"]) == by_text.section(c["heading"], c["body"], c["others"])
    assert audit_text(DRAFT, note=note).to_dict() == audit_text(DRAFT, note_text=note.text).to_dict()
