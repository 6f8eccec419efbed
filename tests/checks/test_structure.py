"""Structure checks: each broken draft caught for the right reason, good drafts pass, note problems."""

import pytest

from conftest import DATA
from pipeline.corpus.samples import split_samples
from pipeline.checks.structure import check_structure, extract_note_problems, load_schema, problem_coverage
from pipeline.note.reader import parse_note
from pipeline.textio import read_document

DRAFTS = DATA / "drafts"
NOTE = read_document(DRAFTS / "note.txt")

BROKEN = {  # file -> a fragment the problem list must contain
    "broken_skipped_number.txt": "编号不连续",
    "broken_duplicate_number.txt": "编号重复",
    "broken_mixed_styles.txt": "编号格式不统一",
    "broken_placeholder.txt": "占位符",
    "broken_markdown.txt": "Markdown 或对话残留",
    "broken_truncated.txt": "结尾不完整",
    "broken_missing_problem.txt": "年轻干部培养缺乏规划",
    "broken_too_few_sections.txt": "至少需要 3 条",
    "broken_invented_numbers.txt": "没有的数字：63.5、1500",
    "broken_duplicate_heading.txt": "标题重复",
}


@pytest.fixture(scope="module")
def schema():
    return load_schema()


@pytest.mark.parametrize("name", ["good_paren.txt"])
def test_good_draft_with_note_passes(schema, name):
    result = check_structure(read_document(DRAFTS / name), schema, NOTE)
    assert result.passed, result.problems
    assert len(result.note_problems) == 4 and all(ok for _, ok in result.note_problems)


def test_good_shi_draft_passes(schema):
    result = check_structure(read_document(DRAFTS / "good_shi.md"), schema)
    assert result.passed, result.problems
    assert result.style == "shi" and [s.number for s in result.sections] == [1, 2, 3]


@pytest.mark.parametrize("name,reason", sorted(BROKEN.items()))
def test_broken_draft_caught_for_the_right_reason(schema, name, reason):
    result = check_structure(read_document(DRAFTS / name), schema, NOTE)
    assert not result.passed
    assert any(reason in p for p in result.problems), result.problems


def test_broken_drafts_have_no_unrelated_numbering_complaints(schema):
    for name in ("broken_placeholder.txt", "broken_markdown.txt", "broken_truncated.txt", "broken_missing_problem.txt"):
        problems = check_structure(read_document(DRAFTS / name), schema, NOTE).problems
        assert not any("编号" in p for p in problems), (name, problems)


def test_markdown_is_residue_not_placeholder(schema):
    problems = check_structure(read_document(DRAFTS / "broken_markdown.txt"), schema, NOTE).problems
    assert not any("占位符" in p for p in problems)


def test_nested_list_restarting_at_one_is_not_mixing(schema):
    text = read_document(DRAFTS / "good_paren.txt").replace("补学也只是传阅材料。", "补学也只是传阅材料。\n1．学习计划不细。\n2．督促检查不严。\n")
    assert not any("不统一" in p for p in check_structure(text, schema).problems)


def test_seed_samples_parse_into_sections(schema):
    for number, sample in split_samples(read_document(DATA.parent.parent / "corpus/samples/seed-2021-dangshi.txt")):
        result = check_structure(sample, schema)
        assert len(result.sections) >= 3, number
        assert not any("编号" in p or "截断" in p for p in result.problems), (number, result.problems)


def test_extract_note_problems_skips_achievements():
    problems = extract_note_problems(NOTE)
    assert len(problems) == 4
    assert problems[0].startswith("班子理论学习流于形式") and not any("公里" in p for p in problems)


@pytest.mark.parametrize("note,expected", [
    ("存在问题：\n1. 学习流于形式\n2、窗口投诉多", ["学习流于形式", "窗口投诉多"]),
    ("（1）台账不全\n① 制度执行不严", ["台账不全", "制度执行不严"]),
    ("今年工作总体平稳。但基层党建仍有短板，支部活动开展不规范。", ["但基层党建仍有短板，支部活动开展不规范"]),
    ("今年完成了全部任务。", []),
])
def test_extract_note_problems_forms(note, expected):
    assert extract_note_problems(note) == expected


def test_problem_coverage_calibration():
    draft = read_document(DRAFTS / "good_paren.txt")
    problems = extract_note_problems(NOTE)
    assert all(ok for _, ok in problem_coverage(draft, problems))
    unrelated = ["食堂饭菜价格偏高，职工意见大", "公务用车管理台账记录不全", "档案数字化进度滞后于计划"]
    assert not any(ok for _, ok in problem_coverage(draft, unrelated))


def test_figures_are_reported(schema):
    result = check_structure(read_document(DRAFTS / "good_paren.txt"), schema, NOTE)
    d = result.to_dict()
    assert d["sections"] == 4 and 0 < d["stock_density"] < 25 and d["specificity"] > 1
    bland = "（一）认识不到位。" + "理论学习还不够深入，有待提高，还有差距。" * 10 + "\n（二）x。\n（三）y。\n"
    assert check_structure(bland, schema).stock_density > 25


def test_new_numbers():
    from pipeline.checks.structure import new_numbers

    assert new_numbers("投诉12起，占25%，2024年", "2024年投诉12起") == ["25"]
    assert new_numbers("无数字", "12") == []


@pytest.mark.parametrize("name", ["good_paren.txt", "broken_missing_problem.txt", "broken_invented_numbers.txt"])
def test_a_parsed_note_gives_what_its_text_gives(schema, name):
    """A parsed Note stands in for its text (read once by the caller); with both, the text as written is compared."""
    draft, note = read_document(DRAFTS / name), parse_note(NOTE)
    assert extract_note_problems(note) == extract_note_problems(NOTE)
    assert problem_coverage(draft, note) == problem_coverage(draft, extract_note_problems(NOTE))
    assert check_structure(draft, schema, note=note) == check_structure(draft, schema, note.text)
    assert check_structure(draft, schema, NOTE, note=note) == check_structure(draft, schema, NOTE)
