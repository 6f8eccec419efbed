"""Structural completeness of a 原因剖析, from an editable schema (corpus/schema.yaml).

Checks: numbered cause sections (count, one style, in sequence with no gaps or repeats), a heading and
a body of reasonable length per section, total length, placeholders, Markdown or chat residue, a cut-off
ending, and with a situation note: every problem the note lists is addressed. Reports two figures with
thresholds: stock-phrase (套话) density and specificity (concrete facts per 1,000 characters).

`extract_note_problems` and `problem_coverage` are public: the drafting chain and the evals reuse them.
Left out: copy detection (copycheck.py), judging whether a cause is argued well, and any model call;
coverage is lexical (character bigrams), so a problem addressed only in entirely new words is missed.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.corpus.samples import ITEM_STYLES, cn_to_int, split_heading, split_sentences
from pipeline.errors import InputError
from pipeline.note.reader import Note, parse_note
from pipeline.textio import read_text

DEFAULT_SCHEMA = PROJECT_ROOT / "corpus" / "schema.yaml"
STYLE_NAMES = {"paren": "（一）", "shi": "一是", "dun": "一、", "arabic": "1．"}
ENDINGS = "。！？!?…”」』）)"
# bigrams too common in these texts to show that a particular problem is meant
_GENERIC = set("问题 存在 不足 不够 工作 我们 方面 情况 一些 没有 还有 差距 进一步 部分 有的 主要 方面 比较 较为 加强 提高 "
               "落实 到位 单位 班子 成员 同志 其中 对于 以及 导致 反映 出现 需要".split())
_FACT = re.compile(r"\d+(?:\.\d+)?\s*(?:%|％|个|次|项|人|名|件|笔|天|年|月|日|万|亿|元|家|户|条|场|期|篇|余|小时|分钟|公里)?"
                   r"|[一二两三四五六七八九十百千]+(?:次|项|名|件|笔|场|期|篇|户|家|条|批|轮|趟|人次)"
                   r"|《[^》]{1,30}》")


@dataclass
class Section:
    number: int
    style: str
    line: int  # 1-based line of the marker
    heading: str
    body: str


@dataclass
class StructureResult:
    passed: bool
    problems: list[str]  # Chinese, one per failed check
    chars: int
    sections: list[Section] = field(default_factory=list)
    style: str | None = None
    stock_density: float = 0.0  # stock phrases per 1,000 characters
    specificity: float = 0.0  # concrete facts per 1,000 characters
    note_problems: list[tuple[str, bool]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed, "problems": self.problems, "chars": self.chars,
            "sections": len(self.sections), "style": self.style,
            "headings": [s.heading for s in self.sections],
            "stock_density": round(self.stock_density, 2), "specificity": round(self.specificity, 2),
            "note_problems": [{"problem": p, "covered": c} for p, c in self.note_problems],
        }


def load_schema(path: str | Path | None = None) -> dict:
    """The schema YAML plus its stock phrases (`stock.phrases`, read from `stock.phrases_file` beside it)."""
    path = Path(path or DEFAULT_SCHEMA)
    try:
        schema = yaml.safe_load(read_text(path))
        for key in ("sections", "text", "placeholders", "residue", "stock", "specificity", "note", "copy"):
            schema[key]  # noqa: B018 - fail fast on a missing key
        phrases_file = path.parent / schema["stock"].get("phrases_file", "stock_phrases.yaml")
        if "phrases" not in schema["stock"]:
            schema["stock"]["phrases"] = yaml.safe_load(read_text(phrases_file))["phrases"]
        for pattern in schema["placeholders"] + schema["residue"]:
            re.compile(pattern)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError, re.error) as exc:
        raise InputError(f"结构规则文件「{path}」无法读取或格式不对（{type(exc).__name__}: {exc}），请对照 corpus/schema.yaml 修改。") from None
    return schema


def _chars(text: str) -> int:
    return len(re.sub(r"\s", "", text))


def find_sections(text: str, styles: list[str]) -> tuple[str | None, list[Section], list[tuple[str, int]]]:
    """(main style, its sections, other (style, first number) lists at line starts). Main = first style found."""
    markers = []  # (line index, style, number, rest of line)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for style in styles:
            m = ITEM_STYLES[style].match(line)
            if m:
                markers.append((i, style, cn_to_int(m.group(1)), line[m.end():]))
                break
    if not markers:
        return None, [], []
    main = markers[0][1]
    own = [m for m in markers if m[1] == main]
    sections = []
    for k, (i, style, number, rest) in enumerate(own):
        end = own[k + 1][0] if k + 1 < len(own) else len(lines)
        heading, body = split_heading("\n".join([rest] + lines[i + 1 : end]).strip())
        sections.append(Section(number, style, i + 1, heading, body))
    others: dict[str, int] = {}
    for _, style, number, _ in markers:
        if style != main:
            others.setdefault(style, number)
    return main, sections, list(others.items())


def extract_note_problems(note: Note | str) -> list[str]:
    """Problems a situation note lists, in its own words: the note reader's (pipeline.note.reader), read here
    when `note` is text. Example: extract_note_problems("存在问题：\\n1. 学习流于形式\\n2. 窗口投诉多") == ["学习流于形式", "窗口投诉多"]
    """
    return [p.text for p in (parse_note(note) if isinstance(note, str) else note).problems]


def _bigrams(text: str) -> set[str]:
    cjk = re.sub(r"[^\u4e00-\u9fff0-9A-Za-z]", " ", text)
    grams = {w[i : i + 2] for w in cjk.split() for i in range(len(w) - 1)}
    return grams - _GENERIC


def problem_coverage(draft_text: str, problems: list[str] | Note, threshold: float = 0.45) -> list[tuple[str, bool]]:
    """(problem, covered) for each problem (a parsed note: its problems): covered when some window of two
    consecutive draft sentences holds at least `threshold` of the problem's content bigrams (generic ones like
    问题/工作 left out)."""
    if isinstance(problems, Note):
        problems = extract_note_problems(problems)
    sentences = split_sentences(draft_text.replace("\n", "。"))
    windows = [_bigrams("".join(sentences[i : i + 2])) for i in range(max(1, len(sentences) - 1))]
    out = []
    for problem in problems:
        grams = _bigrams(problem)
        score = max((len(grams & w) / len(grams) for w in windows), default=0.0) if grams else 1.0
        out.append((problem, score >= threshold))
    return out


NUMBER = re.compile(r"\d+(?:\.\d+)?")


def new_numbers(text: str, note_text: str) -> list[str]:
    """Numbers in `text` that the note never mentions: likely invented facts.

    Example: new_numbers("投诉12起，占25%", "投诉12起") == ["25"]
    """
    known = set(NUMBER.findall(note_text))
    return list(dict.fromkeys(n for n in NUMBER.findall(text) if n not in known))


def stock_density(text: str, phrases: list[str]) -> float:
    """Stock-phrase occurrences per 1,000 characters."""
    return 1000 * sum(text.count(p) for p in phrases) / max(_chars(text), 1)


def specificity(text: str, note_text: str | None = None) -> float:
    """Concrete facts per 1,000 characters: numbers with units, counted events, document titles, and
    (with a note) the note's own facts that the draft reuses: its numbers, quoted names, and its clauses of
    8 characters or more quoted whole (a note without figures states its facts in words: "村务公开栏更新不及时")."""
    facts = len(_FACT.findall(text))
    if note_text:
        own = {f for f in _FACT.findall(note_text) if len(f) > 1} | set(re.findall(r"“([^”]{2,20})”", note_text))
        facts += sum(1 for f in own if f in text)
        clauses = {c.strip() for c in re.split(r"[，,；;。：:！？!?\n]", note_text) if len(c.strip()) >= 8}
        facts += sum(1 for c in clauses - own if c in text and not _FACT.search(c))
    return 1000 * facts / max(_chars(text), 1)


def check_structure(text: str, schema: dict | None = None, note_text: str | None = None, *,
                    note: Note | None = None) -> StructureResult:
    """Run every structural check of the schema on a draft. The note comes as written (`note_text`, read here)
    or parsed (`note`: its problems, and its text where `note_text` is not given), so it is read once."""
    schema = schema or load_schema()
    if note is not None and note_text is None:
        note_text = note.text
    chars = _chars(text)
    problems = []
    if chars < schema["text"]["min_chars"]:
        problems.append(f"全文过短：{chars} 字，至少 {schema['text']['min_chars']} 字。")
    if chars > schema["text"]["max_chars"]:
        problems.append(f"全文过长：{chars} 字，至多 {schema['text']['max_chars']} 字。")
    style, sections, others = find_sections(text, schema["sections"]["styles"])
    problems += _section_problems(sections, style, others, schema["sections"]) + _residue_problems(text, schema)
    density = stock_density(text, schema["stock"]["phrases"])
    if density > schema["stock"]["max_density"]:
        problems.append(f"套话过多：每千字 {density:.1f} 处，上限 {schema['stock']['max_density']}。")
    spec = specificity(text, note_text)
    covered: list[tuple[str, bool]] = []
    if note_text:
        if spec < schema["specificity"]["min_with_note"]:
            problems.append(f"具体性不足：每千字只有 {spec:.1f} 处具体事实（数字、事例、情况说明中的内容），至少 {schema['specificity']['min_with_note']}。")
        invented = new_numbers(text, note_text)
        if len(invented) > schema["note"].get("max_new_numbers", 0):
            problems.append(f"出现情况说明中没有的数字：{'、'.join(invented[:8])}，请核实，不要编造数据。")
        covered = problem_coverage(text, note if note is not None else parse_note(note_text), schema["note"]["coverage_threshold"])
        problems += [f"情况说明中的问题未被剖析：“{problem}”。" for problem, ok in covered if not ok]
    return StructureResult(not problems, problems, chars, sections, style, density, spec, covered)


def _section_problems(sections: list[Section], style: str | None, others: list[tuple[str, int]], sec: dict) -> list[str]:
    """Count, numbering, one style, heading and body lengths, repeated headings and required topics."""
    problems = []
    if len(sections) < sec["min_count"]:
        problems.append(f"编号的原因条目只有 {len(sections)} 条，至少需要 {sec['min_count']} 条（如“（一）（二）（三）”或“一是、二是”）。")
    if len(sections) > sec["max_count"]:
        problems.append(f"编号的原因条目有 {len(sections)} 条，超过上限 {sec['max_count']} 条。")
    for other, first in others:
        if first != 1:  # a nested list restarts at 1; a different style continuing the count is mixing
            problems.append(f"编号格式不统一：既用了“{STYLE_NAMES[style]}”，又用了“{STYLE_NAMES[other]}”。")
    previous = 0
    for s in sections:
        if s.number == previous:
            problems.append(f"编号重复：第 {s.line} 行再次出现第 {s.number} 条。")
        elif s.number != previous + 1:
            problems.append(f"编号不连续：第 {s.line} 行是第 {s.number} 条，应为第 {previous + 1} 条。")
        previous = max(previous, s.number)
        h, b = _chars(s.heading), _chars(s.body)
        if not sec["heading_min_chars"] <= h <= sec["heading_max_chars"]:
            problems.append(f"第 {s.number} 条的标题句长度 {h} 字，应在 {sec['heading_min_chars']}–{sec['heading_max_chars']} 字之间。")
        if b < sec["body_min_chars"]:
            problems.append(f"第 {s.number} 条正文过短：{b} 字，至少 {sec['body_min_chars']} 字。")
        elif b > sec["body_max_chars"]:
            problems.append(f"第 {s.number} 条正文过长：{b} 字，至多 {sec['body_max_chars']} 字。")
    headings = [s.heading for s in sections]
    for heading in dict.fromkeys(h for h in headings if headings.count(h) > 1):
        problems.append(f"标题重复：“{heading}”出现了 {headings.count(heading)} 次，每条原因应有自己的判断。")
    for topic in sec.get("required_topics") or []:
        if not any(topic in s.heading for s in sections):
            problems.append(f"缺少必备内容：没有哪一条的标题涉及“{topic}”。")
    return problems


def _residue_problems(text: str, schema: dict) -> list[str]:
    """Placeholders left unfilled, Markdown or chat residue, and an ending cut off mid-sentence."""
    problems = []
    for pattern in schema["placeholders"]:
        for m in re.finditer(pattern, text):
            problems.append(f"含有未替换的占位符“{m.group()}”（第 {text.count(chr(10), 0, m.start()) + 1} 行）。")
    for pattern in schema["residue"]:
        m = re.search(pattern, text)
        if m:
            problems.append(f"含有 Markdown 或对话残留“{m.group().strip()}”（第 {text.count(chr(10), 0, m.start()) + 1} 行），定稿中应删除。")
    last = text.rstrip()
    if last and last[-1] not in ENDINGS:
        problems.append(f"结尾不完整，似乎在句子中间被截断：“…{last[-15:]}”。")
    return problems
