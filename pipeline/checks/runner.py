"""`poxi check`: copy detection, structural checks and the genre audit on one text, as a result and a report.

The copy thresholds are copycheck's (calibrated there); the pass policy (copied share and number of
copied sentences allowed), the structural rules and which audit kinds fail a draft (`audit.fail_kinds`)
come from the schema file. Left out: rewriting flagged sentences (the drafting chain does that) and
reading files (the CLI uses textio).
"""

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.checks.audit import NAMES, AuditResult, audit_text
from pipeline.config import DEFAULT_CORPUS, load_config
from pipeline.checks.copycheck import CopyIndex, Flag
from pipeline.checks.structure import StructureResult, check_structure, load_schema
from pipeline.note.reader import Note, parse_note


@dataclass
class CheckResult:
    passed: bool
    copy_ratio: float  # share of the text's normalised characters covered by copied runs
    copied: list[Flag] = field(default_factory=list)
    structure: StructureResult | None = None
    copy_problems: list[str] = field(default_factory=list)
    audit: AuditResult | None = None
    quotations: list = field(default_factory=list)  # copycheck.Quotation: words of 习近平总书记 a sample quotes too

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "copy": {
                "passed": not self.copy_problems, "ratio": round(self.copy_ratio, 4),
                "copied": [f.to_dict() for f in self.copied], "problems": self.copy_problems,
                "quotations": [q.to_dict() for q in self.quotations],
            },
            "structure": self.structure.to_dict(),
            "audit": self.audit.to_dict() if self.audit else None,
        }


def find_schema(corpus_dir: Path) -> Path | None:
    """A schema.yaml next to the corpus folder's documents or in its parent wins over the default."""
    for candidate in (corpus_dir / "schema.yaml", corpus_dir.parent / "schema.yaml"):
        if candidate.exists():
            return candidate
    return None


def check_text(text: str, *, corpus_dir: Path | None = None, note_text: str | None = None,
               schema_path: Path | None = None, cache_dir: Path | None = None, note: Note | None = None,
               schema: dict | None = None, copy_index: CopyIndex | None = None) -> CheckResult:
    """Check a draft against the corpus (copying), the schema (structure) and the genre's rules (audit).

    What the caller already holds is used as is: the parsed `note` (else `note_text`, read once here), the
    loaded `schema` (else read from `schema_path` or beside the corpus) and the corpus's `copy_index`."""
    corpus_dir = Path(corpus_dir or DEFAULT_CORPUS)
    schema = schema or load_schema(schema_path or find_schema(corpus_dir))
    index = copy_index or CopyIndex.load(corpus_dir, Path(cache_dir or load_config().cache) / "copyindex")
    if note is None and note_text:
        note = parse_note(note_text)
    scan = index.scan(text)
    flags = scan.copied
    total = index.norm_length(text)
    ratio = sum(f.covered for f in flags) / total if total else 0.0
    policy, copy_problems = schema["copy"], []
    if len(flags) > policy["max_sentences"]:
        copy_problems.append(f"有 {len(flags)} 句与范文雷同（允许 {policy['max_sentences']} 句），请改写。")
    if ratio > policy["max_ratio"]:
        copy_problems.append(f"与范文重复的文字占 {ratio:.1%}，上限 {policy['max_ratio']:.0%}。")
    structure = check_structure(text, schema, note_text, note=note)
    audit = audit_text(text, corpus_dir=corpus_dir, note_text=note_text, schema=schema, note=note)
    return CheckResult(structure.passed and not copy_problems and audit.passed, ratio, flags, structure, copy_problems, audit,
                       scan.quotations)


def render_report(result: CheckResult, text: str) -> str:
    """Human report in Chinese; copied runs are marked 【…】 inside each flagged sentence."""
    s = result.structure
    lines = [f"检查结果：{'通过' if result.passed else '未通过'}", ""]
    lines.append(f"一、抄袭检查：{'通过' if not result.copy_problems else '未通过'}（与范文重复文字占 {result.copy_ratio:.1%}，雷同句 {len(result.copied)} 句）")
    lines += [f"  · {p}" for p in result.copy_problems]
    if result.quotations:
        lines.append(f"  引用习近平总书记原话 {len(result.quotations)} 处（范文也引用，属于引用，不计雷同）：")
        lines += [f"    字符 {q.start}–{q.end}：{q.text}" for q in result.quotations]
    for f in result.copied:
        marked, last = [], f.start
        for a, b in f.runs:
            marked.append(text[last:a] + "【" + text[a:b] + "】")
            last = b
        marked.append(text[last:f.end])
        lines.append(f"  第 {f.position} 句（字符 {f.start}–{f.end}）：{''.join(marked)}")
        lines.append(f"    来源 {f.source_id}：{f.source_text}")
        lines.append(f"    最长相同 {f.longest} 字，覆盖率 {f.containment:.0%}")
    lines.append("")
    lines.append(f"二、结构检查：{'通过' if s.passed else '未通过'}")
    style = {"paren": "（一）", "shi": "一是", "dun": "一、", "arabic": "1．"}.get(s.style, "无")
    lines.append(f"  全文 {s.chars} 字；原因条目 {len(s.sections)} 条（编号格式：{style}）；"
                 f"套话密度 每千字 {s.stock_density:.1f} 处；具体性 每千字 {s.specificity:.1f} 处")
    for sec in s.sections:
        lines.append(f"  （{sec.number}）{sec.heading}")
    if s.note_problems:
        lines.append("  情况说明中的问题：")
        lines += [f"    {'✓' if ok else '✗'} {p}" for p, ok in s.note_problems]
    lines += [f"  · {p}" for p in s.problems]
    if result.audit:
        lines += [""] + render_audit(result.audit)
    return "\n".join(lines)


def render_audit(audit: AuditResult) -> list[str]:
    """The audit's lines of the report: totals per kind, then each section's findings with their spans."""
    counts = audit.counts()
    total = sum(counts.values())
    kinds = "、".join(f"{NAMES[k]} {n}" for k, n in counts.items() if n) or "无"
    lines = [f"三、体裁审查：{'通过' if audit.passed else '未通过'}（共 {total} 处：{kinds}）"]
    for section in audit.sections:
        if section["findings"]:
            lines.append(f"  第 {section['number']} 条 {section['heading']}" if section["number"] else "  全文")
        for f in section["findings"]:
            lines.append(f"    [{NAMES[f.kind]}] 字符 {f.start}–{f.end}：“{f.text}”")
            lines.append(f"      {f.reason}")
    return lines


def run_check(config, draft: str, *, note: str | None = None, schema: str | None = None, as_json: bool = False) -> int:
    """The `poxi check` command: 0 passed, 1 not passed; unusable input raises InputError (exit 2)."""
    import json

    from pipeline.textio import read_document

    text = read_document(draft)
    note_text = read_document(note) if note else None
    result = check_text(text, corpus_dir=config.corpus, note_text=note_text,
                        schema_path=Path(schema) if schema else None, cache_dir=config.cache)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if as_json else render_report(result, text))
    return 0 if result.passed else 1
