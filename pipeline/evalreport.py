"""Eval suite output: the terminal table, JUnit XML and the Markdown report, all from run_eval's data.

Left out: scoring and running (evaluate.py); this module only formats what it is given.
"""

import json
import re
import unicodedata
from pathlib import Path


def clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fmt(value, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "%":
        return f"{value:.0%}"
    if kind == "%1":
        return f"{value:.1%}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_table(data: dict) -> str:
    """The terminal summary: one row per case (means over repetitions), then run totals and similarity."""
    s = data["summary"]
    cols = [("用例", None, ""), ("结果", None, ""), ("覆盖", "coverage", "%"), ("抄袭句", "copied", ""),
            ("抄袭率", "copy_ratio", "%1"), ("引用数据", "facts_used", "%"), ("字数", "length", ""),
            ("段落", "sections", ""), ("套话/千字", "stock_density", ""), ("用时秒", "seconds", ""), ("调用", "calls", "")]
    rows = [[h for h, _, _ in cols]]
    for cid, case in s["cases"].items():
        verdict = ("通过" if case["passed"] else "未通过") + (f" {case['pass_rate']:.0%}" if case["runs"] > 1 else "")
        row = [cid, verdict]
        for _, key, kind in cols[2:]:
            spread = case["spread"].get(key)
            row.append(_fmt(round(spread[1], 3) if spread else None, kind))
        rows.append(row)
    widths = [max(_width(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths)) for row in rows]
    d, c, t = s["cross"]["drafts"], s["cross"]["corpus"], s["totals"]
    lines += ["", f"通过 {s['cases_passed']}/{s['cases_total']} 个用例（逐次通过率 {s['pass_rate']:.0%}），"
              f"用时 {clock(s.get('seconds', 0))}，模型调用 {t['calls']} 次，提示 {t['prompt_tokens']} / 生成 {t['completion_tokens']} tokens，"
              f"缓存命中 {t['hits']}、未命中 {t['misses']}",
              f"初稿之间相似度（5 字片段 Jaccard）：平均 {d['mean_jaccard']:.3f}，最高 {d['max_jaccard']:.3f}"
              + (f"（{' 与 '.join(d['closest'])}）" if d["closest"] else "")
              + f"；范文之间：平均 {c['mean_jaccard']:.3f}，最高 {c['max_jaccard']:.3f}"]
    lines += [f"未通过：{f}" for f in s["suite_failures"]]
    for cid, case in s["cases"].items():
        lines += [f"  {cid}：{r}" for r in case["reasons"]]
    return "\n".join(lines)


def write_junit(data: dict, path: str | Path) -> None:
    """One <testcase> per eval case (per repetition with --repeat) plus one for the suite-wide gates."""
    import xml.etree.ElementTree as ET

    entries, s = data["entries"], data["summary"]
    failed = sum(not e["passed"] for e in entries) + bool(s["suite_failures"])
    suite = ET.Element("testsuite", name="poxi-eval", tests=str(len(entries) + 1), failures=str(failed),
                       errors="0", time=f"{s.get('seconds', 0):.1f}")
    for e in entries:
        name = e["id"] + (f"#r{e['rep']}" if data["settings"].get("repeat", 1) > 1 else "")
        case = ET.SubElement(suite, "testcase", classname="poxi.eval", name=name, time=f"{e['figures'].get('seconds', 0):.2f}")
        if not e["passed"]:
            ET.SubElement(case, "failure", message="；".join(e["reasons"])[:500]).text = "\n".join(e["reasons"])
        ET.SubElement(case, "system-out").text = json.dumps(e["figures"], ensure_ascii=False)
    case = ET.SubElement(suite, "testcase", classname="poxi.eval", name="cross-draft-similarity", time="0")
    if s["suite_failures"]:
        ET.SubElement(case, "failure", message="；".join(s["suite_failures"])[:500]).text = "\n".join(s["suite_failures"])
    ET.SubElement(case, "system-out").text = json.dumps(s["cross"]["drafts"], ensure_ascii=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites", name="poxi", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def mark_draft(entry: dict) -> str:
    """The draft with copied sentences and forbidden phrases wrapped in <mark>, each with its reason."""
    text, spans = entry.get("draft", ""), []  # (start, end, label)
    for c in entry.get("copied", []):
        start, end = c.get("start", -1), c.get("end", -1)
        if not (0 <= start < end <= len(text) and text[start:end] == c["sentence"]):
            start = text.find(c["sentence"])
            end = start + len(c["sentence"])
        if start >= 0:
            spans.append((start, end, f"疑似抄袭 {c['source_id']}，最长相同 {c['longest']} 字"))
    for phrase in entry.get("banned", []):
        for m in re.finditer(re.escape(phrase), text):
            spans.append((m.start(), m.end(), "不应出现"))
    out, last = [], 0
    for start, end, label in sorted(spans):
        if start < last:
            continue
        out += [text[last:start], f"<mark>{text[start:end]}</mark>〔{label}〕"]
        last = end
    out.append(text[last:])
    return "".join(out)


def write_report(data: dict, path: str | Path) -> None:
    """Markdown: the table, the similarity figures, then per case its verdict, problems checklist and marked draft."""
    s = data["summary"]
    lines = ["# poxi 评测报告", "", f"开始于 {data['started']}；模型 {data['settings'].get('model') or '内置模型'}，"
             f"温度 {data['settings']['temperature']}，种子 {data['settings']['seed']}，重复 {data['settings']['repeat']} 次。",
             f"结论：{'全部门槛通过' if s['passed'] else '有门槛未通过'}。", "", "```", format_table(data), "```", ""]
    lines += [f"- 退步：{r}" for r in data.get("regressions", [])] + ([""] if data.get("regressions") else [])
    for e in data["entries"]:
        title = e["id"] + (f"（第 {e['rep'] + 1} 轮）" if data["settings"].get("repeat", 1) > 1 else "")
        lines += [f"## {title}：{'通过' if e['passed'] else '未通过'}", ""]
        lines += [f"- ✗ {r}" for r in e["reasons"]]
        lines += ["", "**情况说明**", "", *("> " + line for line in e["note"].splitlines()), ""]
        if e.get("coverage"):
            lines += ["**应涉及的问题**", ""]
            lines += [f"- {'✓' if c['addressed'] else '✗'} {c['problem']}（匹配 {c['matched'] or '-'}，{c['score']:.2f}）" for c in e["coverage"]]
            lines.append("")
        if e.get("copied"):
            lines += ["**疑似抄袭的句子**", ""]
            lines += [f"- {c['sentence']}\n  - 来源 {c['source_id']}：{c['source_text']}" for c in e["copied"]]
            lines.append("")
        lines += ["**初稿**", "", mark_draft(e) or "（无）", ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines), encoding="utf-8")
