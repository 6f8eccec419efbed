"""Eval suite output: the terminal table, JUnit XML and the Markdown report, all from the runner's data.

One model: a row per case. A comparison (data["models"]): a row per model, the genre-audit findings
per kind per model, the rubric grader's means and its agreement with the audit, and per case the drafts
side by side with copied spans (<mark>) and audit findings (<u>, the reason on hover) marked.
Left out: scoring and running (runner.py); this module only formats what it is given.
"""

import html
import json
import re
import unicodedata
from pathlib import Path

from pipeline.evaluation.score import KIND_NAMES

# the chain's own reasons for refusing a clause, beside the genre audit's kinds
REASON_NAMES = {"format": "格式不符", "copied": "抄袭范文", "effect": "写了后果", "contrary": "想法说反了"}


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


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths)).rstrip() for row in rows]


def _markdown_table(rows: list[list[str]]) -> list[str]:
    cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(cell, rows[0])) + " |", "|" + "---|" * len(rows[0]),
            *("| " + " | ".join(map(cell, r)) + " |" for r in rows[1:])]


def _audit_line(audit: dict | None) -> str:
    if not audit:
        return "体裁审查：本次检查未提供（pipeline/audit.py 尚未接入）"
    mode = "仅报告，不影响通过" if audit.get("mode", "report") == "report" else f"门槛：每类不超过 {audit.get('max_findings')} 处"
    kinds = "、".join(f"{KIND_NAMES.get(k, k)} {n}" for k, n in audit["counts"].items() if n) or "无"
    return f"体裁审查（{mode}）：{audit['drafts']} 篇中 {audit['clean']} 篇无问题，共 {audit['total']} 处：{kinds}"


def format_table(data: dict) -> str:
    """The terminal summary: a comparison's model table, or one row per case (means over repetitions)."""
    if "models" in data:
        return format_compare_table(data)
    s = data["summary"]
    cols = [("用例", None, ""), ("结果", None, ""), ("覆盖", "coverage", "%"), ("抄袭句", "copied", ""),
            ("抄袭率", "copy_ratio", "%1"), ("引用数据", "facts_used", "%"), ("字数", "length", ""),
            ("段落", "sections", ""), ("段中位字数", "section_median", ""), ("自写占比", "own_share", "%"), ("审查", "audit_findings", ""), ("初写不合格句", "first_failed_links", ""),
            ("重写", "regenerated", ""), ("套话/千字", "stock_density", ""), ("用时秒", "seconds", ""), ("调用", "calls", "")]
    rows = [[h for h, _, _ in cols]]
    for cid, case in s["cases"].items():
        verdict = ("通过" if case["passed"] else "未通过") + (f" {case['pass_rate']:.0%}" if case["runs"] > 1 else "")
        row = [cid, verdict]
        for _, key, kind in cols[2:]:
            spread = case["spread"].get(key)
            row.append(_fmt(round(spread[1], 3) if spread else None, kind))
        rows.append(row)
    lines = _grid(rows)
    d, c, t = s["cross"]["drafts"], s["cross"]["corpus"], s["totals"]
    lines += ["", f"通过 {s['cases_passed']}/{s['cases_total']} 个用例（逐次通过率 {s['pass_rate']:.0%}），"
              f"用时 {clock(s.get('seconds', 0))}，模型调用 {t['calls']} 次，提示 {t['prompt_tokens']} / 生成 {t['completion_tokens']} tokens，"
              f"缓存命中 {t['hits']}、未命中 {t['misses']}",
              f"初稿之间相似度（5 字片段 Jaccard）：平均 {d['mean_jaccard']:.3f}，最高 {d['max_jaccard']:.3f}"
              + (f"（{' 与 '.join(d['closest'])}）" if d["closest"] else "")
              + f"；范文之间：平均 {c['mean_jaccard']:.3f}，最高 {c['max_jaccard']:.3f}",
              _audit_line(s.get("audit"))]
    if t.get("links"):
        lines.append(_first_written_line(t))
    if s.get("judge"):
        lines.append(_judge_line(s["judge"]))
    lines += [f"未通过：{f}" for f in s["suite_failures"]]
    for cid, case in s["cases"].items():
        lines += [f"  {cid}：{r}" for r in case["reasons"]]
    return "\n".join(lines)


def _first_written_line(t: dict) -> str:
    """How the model first wrote the drafts, before any clause was written again or cut."""
    sec, links = t["sections"] - t["first_failed_sections"], t["links"] - t["first_failed_links"]
    return (f"模型初写即合格（重写、删句之前）：段落 {sec}/{t['sections']}（{_fmt(sec / max(1, t['sections']), '%')}），"
            f"句 {links}/{t['links']}（{_fmt(links / t['links'], '%')}）"
            + (f"，论证句 {t['moves'] - t['first_failed_moves']}/{t['moves']}"
               f"（{_fmt((t['moves'] - t['first_failed_moves']) / t['moves'], '%')}）" if t.get("moves") else "")
            + f"；重写 {t['regenerated']} 次")


def _judge_line(judge: dict) -> str:
    means = "、".join(f"{k} {v:g}" for k, v in judge["means"].items() if v is not None) or "-"
    rate = judge["agreement"]["rate"]
    return (f"评分模型（仅供参考）：评了 {judge['judged']} 篇（{judge['unjudged']} 篇输出不合格），均分 {means}；"
            f"与体裁审查一致 {_fmt(rate, '%')}（{judge['agreement']['agree']}/{judge['agreement']['pairs']}）")


def compare_rows(data: dict) -> list[list[str]]:
    """One row per model: the comparison's headline figures."""
    rows = [["模型", "通过用例", "审查发现", "覆盖", "引用数据", "抄袭率", "初稿相似度(最高)", "中位用时秒", "tokens 提示/生成"]]
    for name, run in data["models"].items():
        s = run.get("summary")
        if not s:
            rows.append([name, "未完成"] + ["-"] * 7)
            continue
        m, t, a = s["means"], s["totals"], s.get("audit")
        rows.append([name, f"{s['cases_passed']}/{s['cases_total']}", _fmt(a["total"] if a else None),
                     _fmt(m["coverage"], "%"), _fmt(m["facts_used"], "%"), _fmt(m["copy_ratio"], "%1"),
                     f"{s['cross']['drafts']['max_jaccard']:.3f}", _fmt(s["median_seconds"]),
                     f"{t['prompt_tokens']}/{t['completion_tokens']}"])
    return rows


def kind_rows(data: dict) -> list[list[str]] | None:
    """Genre-audit findings per kind (rows) and model (columns); None when no run had an audit."""
    audits = {name: (run.get("summary") or {}).get("audit") for name, run in data["models"].items()}
    if not any(audits.values()):
        return None
    kinds = list(dict.fromkeys(k for a in audits.values() if a for k in a["counts"]))
    rows = [["审查类别", *audits]]
    rows += [[f"{KIND_NAMES.get(k, k)}（{k}）", *(_fmt(a["counts"].get(k, 0)) if a else "-" for a in audits.values())] for k in kinds]
    return rows


def judge_rows(data: dict) -> list[list[str]] | None:
    """The grader's mean score per criterion and model, and its agreement with the audit."""
    judges = {name: (run.get("summary") or {}).get("judge") for name, run in data["models"].items()}
    if not any(judges.values()):
        return None
    criteria = data.get("judge", {}).get("criteria") or next(j for j in judges.values() if j)["means"]
    rows = [["评分项（1–5）", *judges]]
    rows += [[f"{criteria[c]['name'] if isinstance(criteria[c], dict) else c}（{c}）",
              *(_fmt(j["means"].get(c)) if j else "-" for j in judges.values())] for c in criteria]
    rows.append(["与体裁审查一致", *(f"{_fmt(j['agreement']['rate'], '%')}（{j['agreement']['agree']}/{j['agreement']['pairs']}）"
                                   if j else "-" for j in judges.values())])
    rows.append(["输出不合格", *(_fmt(j["unjudged"]) if j else "-" for j in judges.values())])
    return rows


def format_compare_table(data: dict) -> str:
    lines = _grid(compare_rows(data))
    if kind_rows(data):
        lines += ["", *_grid(kind_rows(data))]
    if judge_rows(data):
        who = (data.get("judge") or {}).get("model", {}).get("name", "")
        lines += ["", f"评分模型 {who}（仅供参考，不作门槛）：", *_grid(judge_rows(data))]
    for name, run in data["models"].items():
        s = run.get("summary") or {}
        lines += [f"{name} 未通过：{f}" for f in s.get("suite_failures", [])]
        for cid, case in s.get("cases", {}).items():
            lines += [f"  {name} / {cid}：{r}" for r in case["reasons"]]
    if any((run.get("summary") or {}).get("audit", {}) and run["summary"]["audit"].get("mode") == "report"
           for run in data["models"].values()):
        lines.append("体裁审查仅报告，不影响通过（evals/config.yaml 的 audit.mode）。")
    return "\n".join(lines)


# -- JUnit -----------------------------------------------------------------------------------------

def _suite(data: dict, name: str):
    """One <testsuite>: a <testcase> per eval case (per repetition with --repeat) plus one for the suite-wide gates."""
    import xml.etree.ElementTree as ET

    entries, s = data["entries"], data["summary"]
    failed = sum(not e["passed"] for e in entries) + bool(s["suite_failures"])
    suite = ET.Element("testsuite", name=name, tests=str(len(entries) + 1), failures=str(failed),
                       errors="0", time=f"{s.get('seconds', 0):.1f}")
    classname = "poxi.eval" if name == "poxi-eval" else f"poxi.eval.{name.removeprefix('poxi-eval:')}"
    for e in entries:
        label = e["id"] + (f"#r{e['rep']}" if data["settings"].get("repeat", 1) > 1 else "")
        case = ET.SubElement(suite, "testcase", classname=classname, name=label, time=f"{e['figures'].get('seconds', 0):.2f}")
        if not e["passed"]:
            ET.SubElement(case, "failure", message="；".join(e["reasons"])[:500]).text = "\n".join(e["reasons"])
        out = {**e["figures"], "audit": (e.get("audit") or {}).get("counts")}
        if (e.get("judge") or {}).get("scores"):
            out["judge"] = {k: v["score"] for k, v in e["judge"]["scores"].items()}
        ET.SubElement(case, "system-out").text = json.dumps(out, ensure_ascii=False)
    case = ET.SubElement(suite, "testcase", classname=classname, name="cross-draft-similarity", time="0")
    if s["suite_failures"]:
        ET.SubElement(case, "failure", message="；".join(s["suite_failures"])[:500]).text = "\n".join(s["suite_failures"])
    ET.SubElement(case, "system-out").text = json.dumps(s["cross"]["drafts"], ensure_ascii=False)
    return suite


def write_junit(data: dict, path: str | Path) -> None:
    """JUnit XML: one <testsuite> for one model, one per model (named poxi-eval:NAME) for a comparison."""
    import xml.etree.ElementTree as ET

    runs = {f"poxi-eval:{n}": r for n, r in data["models"].items() if r.get("summary")} if "models" in data else {"poxi-eval": data}
    suites = [_suite(run, name) for name, run in runs.items()]
    root = ET.Element("testsuites", name="poxi", tests=str(sum(int(s.get("tests")) for s in suites)),
                      failures=str(sum(int(s.get("failures")) for s in suites)))
    root.extend(suites)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


# -- Markdown --------------------------------------------------------------------------------------

def _findings(entry: dict) -> list[dict]:
    return [{**f, "section": sec.get("number")} for sec in (entry.get("audit") or {}).get("sections") or []
            for f in sec.get("findings") or []]


def _locate(text: str, start, end, quoted: str) -> tuple[int, int]:
    """The span's offsets, trusted when they hold `quoted`, else its first occurrence (-1 when absent)."""
    if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text) and text[start:end] == quoted:
        return start, end
    start = text.find(quoted) if quoted else -1
    return start, start + len(quoted)


def mark_draft(entry: dict, as_html: bool = False) -> str:
    """The draft with copied sentences (<mark>), forbidden phrases (<mark>) and audit findings (<u>) marked,
    each followed by its label. `as_html`: escaped, line breaks as <br>, for a table cell."""
    text, spans = entry.get("draft", ""), []  # (start, end, tag, label, hover)
    for c in entry.get("copied", []):
        start, end = _locate(text, c.get("start"), c.get("end"), c["sentence"])
        if start >= 0:
            spans.append((start, end, "mark", f"疑似抄袭 {c['source_id']}，最长相同 {c['longest']} 字", ""))
    for phrase in entry.get("banned", []):
        for m in re.finditer(re.escape(phrase), text):
            spans.append((m.start(), m.end(), "mark", "不应出现", ""))
    for f in _findings(entry):
        start, end = _locate(text, f.get("start"), f.get("end"), f.get("text", ""))
        if start >= 0:
            spans.append((start, end, "u", KIND_NAMES.get(f["kind"], f["kind"]), f.get("reason", "")))
    esc = html.escape if as_html else (lambda s: s)
    out, last = [], 0
    for start, end, tag, label, hover in sorted(spans):
        if start < last:
            continue  # overlapping spans: the first wins in the text; every finding is still listed below it
        title = f' title="{html.escape(hover, quote=True)}"' if hover else ""
        out += [esc(text[last:start]), f"<{tag}{title}>{esc(text[start:end])}</{tag}>〔{esc(label)}〕"]
        last = end
    out.append(esc(text[last:]))
    marked = "".join(out)
    return marked.replace("\n", "<br>") if as_html else marked


def _audit_lines(entry: dict) -> list[str]:
    audit = entry.get("audit") or {}
    if audit.get("counts") is None:
        return []
    lines = ["**体裁审查**" + ("（仅报告）" if audit.get("notes") else ""), ""]
    counts = "、".join(f"{KIND_NAMES.get(k, k)}（{k}）{n}" for k, n in audit["counts"].items() if n)
    lines.append(f"- 按类别：{counts or '无问题'}")
    for f in _findings(entry):
        lines.append(f"- 第 {f['section']} 条 · {KIND_NAMES.get(f['kind'], f['kind'])}（{f['kind']}）：「{f.get('text', '')}」——{f.get('reason', '')}")
    return [*lines, ""]


def _judge_lines(entry: dict) -> list[str]:
    judge = entry.get("judge")
    if not judge:
        return []
    if not judge.get("scores"):
        return ["**评分模型**（仅供参考）", "", f"- 未能评分：{judge.get('error', '')}", ""]
    return ["**评分模型**（仅供参考）", "", *(f"- {k}：{v['score']} 分——{v['reason']}" for k, v in judge["scores"].items()), ""]


def write_report(data: dict, path: str | Path) -> None:
    """Markdown: the table and figures, then per case its verdict, problems checklist, audit and marked draft."""
    if "models" in data:
        return write_compare_report(data, path)
    s = data["summary"]
    lines = ["# poxi 评测报告", "", f"开始于 {data['started']}；模型 {data['settings'].get('model') or '内置模型'}，"
             f"温度 {data['settings']['temperature']}，种子 {data['settings']['seed']}，重复 {data['settings']['repeat']} 次。",
             f"结论：{'全部门槛通过' if s['passed'] else '有门槛未通过'}。", "", "```", format_table(data), "```", ""]
    lines += [f"- 退步：{r}" for r in data.get("regressions", [])] + ([""] if data.get("regressions") else [])
    if s.get("audit"):
        lines += ["## 体裁审查（按用例、类别）", "", *_markdown_table(_case_kind_rows(data["entries"])), ""]
    for e in data["entries"]:
        title = e["id"] + (f"（第 {e['rep'] + 1} 轮）" if data["settings"].get("repeat", 1) > 1 else "")
        lines += [f"## {title}：{'通过' if e['passed'] else '未通过'}", ""]
        lines += [f"- ✗ {r}" for r in e["reasons"]]
        lines += [f"- （仅报告）{r}" for r in (e.get("audit") or {}).get("notes", [])]
        lines += ["", "**情况说明**", "", *("> " + line for line in e["note"].splitlines()), ""]
        if e.get("coverage"):
            lines += ["**应涉及的问题**", ""]
            lines += [f"- {'✓' if c['addressed'] else '✗'} {c['problem']}（匹配 {c['matched'] or '-'}，{c['score']:.2f}）" for c in e["coverage"]]
            lines.append("")
        if e.get("copied"):
            lines += ["**疑似抄袭的句子**", ""]
            lines += [f"- {c['sentence']}\n  - 来源 {c['source_id']}：{c['source_text']}" for c in e["copied"]]
            lines.append("")
        if e.get("rejected"):
            lines += ["**模型写出但未采用的句子**（重写或删去小句之前）", ""]
            lines += [f"- 第{r['section']}条{'重写' if r['attempt'] else '初写'}：{r['text']}"
                      f"（{'、'.join(REASON_NAMES.get(x, KIND_NAMES.get(x, x)) for x in r['reasons'])}）"
                      for r in e["rejected"]]
            lines.append("")
        lines += _audit_lines(e) + _judge_lines(e)
        lines += ["**初稿**", "", mark_draft(e) or "（无）", ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def _case_kind_rows(entries: list[dict], label=lambda e: e["id"]) -> list[list[str]]:
    kinds = list(dict.fromkeys([*KIND_NAMES, *(k for e in entries for k in ((e.get("audit") or {}).get("counts") or {}))]))
    rows = [["用例", *kinds, "合计"]]
    for e in entries:
        counts = (e.get("audit") or {}).get("counts")
        rows.append([label(e), *(_fmt(counts.get(k, 0)) if counts is not None else "-" for k in kinds),
                     _fmt(sum(counts.values()) if counts is not None else None)])
    return rows


def write_compare_report(data: dict, path: str | Path) -> None:
    """Markdown for a comparison: model tables, then per case the verdicts and the drafts side by side."""
    runs = {name: run for name, run in data["models"].items() if run.get("summary")}
    lines = ["# poxi 模型对比评测", "", f"开始于 {data['started']}；{len(data['cases'])} 个用例 × {len(runs)} 个模型。", ""]
    lines += [f"- {n}：{'内置模型' if r['spec']['base_url'] == 'embedded' else r['spec']['base_url']}"
              + (f"，模型 {r['spec']['model']}" if r["spec"].get("model") else "")
              + (f"，提示词 {r['spec']['prompts_dir']}" if r["spec"].get("prompts_dir") else "")
              + f"；{'全部门槛通过' if r['summary']['passed'] else '有门槛未通过'}" for n, r in runs.items()]
    lines += ["", "## 总表", "", *_markdown_table(compare_rows(data)), ""]
    lines += ["覆盖、引用数据、抄袭率为各用例的平均；初稿相似度为同一模型不同单位初稿之间的最高 5 字片段 Jaccard；"
              "用时为缓存命中时的回放用时，比较速度请加 --no-cache。", ""]
    if kind_rows(data):
        lines += ["## 体裁审查（按类别）", "", *_markdown_table(kind_rows(data)), ""]
        order = {cid: i for i, cid in enumerate(data["cases"])}
        entries = sorted(({**e, "_model": n} for n, r in runs.items() for e in r["entries"]), key=lambda e: order[e["id"]])
        lines += ["### 按用例", "", *_markdown_table(_case_kind_rows(entries, lambda e: f"{e['id']} · {e['_model']}")), ""]
    if judge_rows(data):
        who = (data.get("judge") or {}).get("model", {})
        lines += [f"## 评分模型 {who.get('name', '')}（仅供参考，不作门槛）", "",
                  f"评分模型：{who.get('base_url', '')} {who.get('model') or ''}，评分标准 evals/rubric.yaml（版本 {data['judge']['rubric']}）。", "",
                  *_markdown_table(judge_rows(data)), "",
                  "一致：评分 ≥ 及格分与“该项对应的审查类别无发现”同真同假的比例。", ""]
    lines += [f"- 注意：{w}" for w in data.get("warnings", [])]
    lines += [f"- 退步：{r}" for r in data.get("regressions", [])]
    for cid in data["cases"]:
        per = {n: [e for e in r["entries"] if e["id"] == cid] for n, r in runs.items()}
        lines += [f"## {cid}", ""]
        first = next((es[0] for es in per.values() if es), None)
        if first:
            lines += ["**情况说明**", "", *("> " + line for line in first["note"].splitlines()), ""]
        for n, es in per.items():
            for e in es:
                f = e["figures"]
                figures = (f"覆盖 {_fmt(f.get('coverage'), '%')}，审查 {_fmt(f.get('audit_findings'))} 处，"
                           f"抄袭率 {_fmt(f.get('copy_ratio'), '%1')}，{_fmt(f.get('length'))} 字，用时 {_fmt(f.get('seconds'))} 秒")
                lines.append(f"- {n}：{'通过' if e['passed'] else '未通过'}（{figures}）" + ("；" + "；".join(e["reasons"]) if e["reasons"] else ""))
        lines += ["", "<table>", "<tr>" + "".join(f"<th>{html.escape(n)}</th>" for n in per) + "</tr>"]
        for rep in sorted({e["rep"] for es in per.values() for e in es}):
            cells = []
            for es in per.values():
                e = next((x for x in es if x["rep"] == rep), None)
                cells.append(_cell(e) if e else "（无）")
            lines.append("<tr>" + "".join(f'<td valign="top">{c}</td>' for c in cells) + "</tr>")
        lines += ["</table>", ""]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def _cell(e: dict) -> str:
    """One draft for the side-by-side table: marked text, then its findings and the grader's scores."""
    parts = [mark_draft(e, as_html=True) or html.escape(e.get("error") or "（无）")]
    findings = _findings(e)
    if findings:
        parts.append("<br><br><b>体裁审查</b><br>" + "<br>".join(
            f"第 {f['section']} 条 · {html.escape(KIND_NAMES.get(f['kind'], f['kind']))}：「{html.escape(f.get('text', ''))}」"
            f"——{html.escape(f.get('reason', ''))}" for f in findings))
    if e.get("copied"):
        parts.append("<br><br><b>疑似抄袭</b><br>" + "<br>".join(
            f"{html.escape(c['sentence'])}（{html.escape(c['source_id'])}）" for c in e["copied"]))
    judge = e.get("judge") or {}
    if judge.get("scores"):
        parts.append("<br><br><b>评分模型</b><br>" + "<br>".join(
            f"{k} {v['score']}：{html.escape(v['reason'])}" for k, v in judge["scores"].items()))
    elif judge.get("error"):
        parts.append(f"<br><br><b>评分模型</b>：{html.escape(judge['error'])}")
    return "".join(parts)
