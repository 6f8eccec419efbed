"""The eval suite: run situation notes through the whole chain, score each draft, gate CI on the scores.

Cases are YAML files under evals/cases (one per case), gates and baseline margins live in
evals/config.yaml. Every case is drafted with fixed temperature and seed through a response cache
(pipeline/cache.py), then scored deterministically: the copy and structure checks (pipeline/check.py),
coverage of the case's expected problems, length and sections, forbidden phrases, how many of the
note's figures the draft cites. Across cases: how alike the drafts for different units are, beside the
same figure for the corpus samples among themselves. Results go to JSON after every case, so a killed
run keeps what it finished; JUnit XML, a Markdown report and a baseline comparison are built from them.

Left out: judging quality with a model (every score is deterministic text arithmetic), parallel runs
(one local model, two cores), resuming a killed run (the response cache makes a rerun cheap instead).
"""

import itertools
import json
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from .corpus import PROJECT_ROOT, load_corpus, parse_items, split_sentences
from .errors import InputError, ModelError
from .evalreport import clock, format_table, write_junit, write_report

DEFAULT_CASES = PROJECT_ROOT / "evals" / "cases"
DEFAULT_GATES = PROJECT_ROOT / "evals" / "config.yaml"
FIGURES = ("coverage", "copied", "copy_ratio", "length", "sections", "facts_used", "stock_density", "specificity",
           "seconds", "calls", "prompt_tokens", "completion_tokens")
HIGHER_BETTER = {"coverage", "facts_used", "specificity", "pass_rate"}  # the rest: lower is better in margins
CASE_FIELDS = ("id", "unit_kind", "year", "theme", "note", "expect")


@dataclass
class Case:
    id: str
    unit_kind: str
    year: int
    theme: str
    note: str
    problems: list[str]  # each "甲|乙": addressed when any alternative is
    min_sections: int
    length: tuple[int, int]
    must_not_contain: list[str] = field(default_factory=list)
    path: str = ""


def _fail(path, why: str):
    raise InputError(f"评测用例「{path}」{why}，请按 evals/cases 里的示例修改。")


def load_gates(path: str | Path | None = None) -> dict:
    """Read evals/config.yaml into {"model", "case", "suite", "margins"}."""
    path = Path(path or DEFAULT_GATES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"找不到评测门槛文件「{path}」，请恢复 evals/config.yaml。") from None
    except yaml.YAMLError as exc:
        raise InputError(f"评测门槛文件「{path}」不是合法的 YAML：{exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("model", "case", "suite", "margins")):
        raise InputError(f"评测门槛文件「{path}」须包含 model、case、suite、margins 四节。")
    return data


def load_case(path: Path, defaults: dict | None = None) -> Case:
    """Read and validate one case file; every problem raises InputError naming the file and field."""
    defaults = defaults or {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        _fail(path, f"不是合法的 YAML（{str(exc).splitlines()[0]}）")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(path, f"无法读取（{exc}）")
    if not isinstance(data, dict):
        _fail(path, "应是一个映射（id、note、expect 等字段）")
    missing = [k for k in CASE_FIELDS if data.get(k) in (None, "")]
    if missing:
        _fail(path, f"缺少字段：{'、'.join(missing)}")
    unknown = set(data) - set(CASE_FIELDS)
    if unknown:
        _fail(path, f"有未知字段：{'、'.join(sorted(unknown))}")
    expect = data["expect"]
    if not isinstance(expect, dict):
        _fail(path, "的 expect 应是映射（problems、min_sections、length、must_not_contain）")
    unknown = set(expect) - {"problems", "min_sections", "length", "must_not_contain"}
    if unknown:
        _fail(path, f"的 expect 有未知字段：{'、'.join(sorted(unknown))}")
    problems = expect.get("problems")
    if not isinstance(problems, list) or not problems or not all(isinstance(p, str) and p.strip() for p in problems):
        _fail(path, "的 expect.problems 应是非空的关键词列表")
    length = expect.get("length", defaults.get("length", [900, 2600]))
    if not (isinstance(length, list) and len(length) == 2 and all(isinstance(n, int) for n in length) and length[0] < length[1]):
        _fail(path, "的 expect.length 应是 [最少字数, 最多字数]")
    sections = expect.get("min_sections", defaults.get("min_sections", 4))
    banned = expect.get("must_not_contain") or []
    if not isinstance(sections, int) or sections < 1:
        _fail(path, "的 expect.min_sections 应是正整数")
    if not isinstance(banned, list) or not all(isinstance(b, str) for b in banned):
        _fail(path, "的 expect.must_not_contain 应是字符串列表")
    if not isinstance(data["year"], int):
        _fail(path, "的 year 应是年份数字，如 2024")
    return Case(str(data["id"]), str(data["unit_kind"]), data["year"], str(data["theme"]), str(data["note"]).strip(),
                [p.strip() for p in problems], sections, (length[0], length[1]), banned, str(path))


def load_cases(path: str | Path | None = None, *, only: list[str] | None = None, defaults: dict | None = None) -> list[Case]:
    """All cases in a folder (sorted by file name) or one case file; `only` keeps those ids, in the folder's order."""
    path = Path(path or DEFAULT_CASES)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not files:
            raise InputError(f"评测用例文件夹「{path}」里没有 .yaml 文件，请用 --cases 指定用例文件夹。")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"找不到评测用例「{path}」，请用 --cases 指定用例文件夹或文件。")
    cases = [load_case(p, defaults) for p in files]
    seen: dict[str, str] = {}
    for case in cases:
        if case.id in seen:
            raise InputError(f"评测用例 id「{case.id}」重复：{seen[case.id]} 与 {case.path}，请改成不同的 id。")
        seen[case.id] = case.path
    if only:
        unknown = [i for i in only if i not in seen]
        if unknown:
            raise InputError(f"没有这些评测用例：{'、'.join(unknown)}。可用：{'、'.join(seen)}")
        cases = [c for c in cases if c.id in only]
    return cases


# -- scoring ---------------------------------------------------------------------------------------

def norm(text: str) -> str:
    """Compare form: NFKC, lower case, letters/digits/CJK only. Example: norm("一岗 双责！") == "一岗双责" """
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if ch.isalnum())


def _bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def coverage(draft: str, problems: list[str], match: float = 0.6) -> list[dict]:
    """Per expected problem: addressed when an alternative appears verbatim (after norm), or, for one of
    4+ characters, when a single sentence holds `match` of its character bigrams."""
    whole = norm(draft)
    sentences = [norm(s) for s in split_sentences(draft)]
    out = []
    for problem in problems:
        best, hit = 0.0, None
        for alt in (norm(a) for a in problem.split("|")):
            if not alt:
                continue
            if alt in whole:
                best, hit = 1.0, alt
                break
            grams = _bigrams(alt)
            if len(alt) >= 4 and grams:
                score = max((len(grams & _bigrams(s)) / len(grams) for s in sentences), default=0.0)
                if score > best:
                    best, hit = score, alt
        out.append({"problem": problem, "addressed": best >= match, "score": round(best, 3), "matched": hit})
    return out


YEAR = re.compile(r"^(19|20)\d\d$")
MARKER = re.compile(r"^\s*\d{1,2}\s*[.、．)）]", re.M)


def note_figures(note: str) -> list[str]:
    """Numbers in a note that are facts: not years, not list markers. Example: "1. 调研仅6次" -> ["6"]"""
    text = MARKER.sub(" ", note)
    return sorted({n for n in re.findall(r"\d+(?:\.\d+)?", text) if not YEAR.match(n)})


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_check(text: str, note: str, config) -> dict:
    """The copy and structure checks of pipeline/check.py, as its to_dict()."""
    from .check import check_text

    return check_text(text, corpus_dir=config.corpus, note_text=note, cache_dir=config.cache).to_dict()


def score_case(case: Case, text: str, check: dict, gates: dict) -> dict:
    """Figures and failed-gate reasons for one draft. `check` is check_text(...).to_dict()."""
    g = gates["case"]
    structure, copy = check.get("structure", {}), check.get("copy", {})
    cov = coverage(text, case.problems, g.get("coverage_match", 0.6))
    facts = note_figures(case.note)
    cited = [f for f in facts if re.search(rf"(?<![\d.]){re.escape(f)}(?![\d.])", unicodedata.normalize("NFKC", text))]
    banned = [b for b in [*case.must_not_contain, *g.get("must_not_contain", [])] if norm(b) and norm(b) in norm(text)]
    sections = structure.get("sections")
    sections = sections if isinstance(sections, int) else len(parse_items(text, "draft")[1])
    fig = {
        "coverage": round(sum(c["addressed"] for c in cov) / len(cov), 3),
        "copied": len(copy.get("copied", [])),
        "copy_ratio": round(float(copy.get("ratio", 0.0)), 4),
        "length": len(re.sub(r"\s", "", text)),
        "sections": sections,
        "facts_used": round(len(cited) / len(facts), 3) if facts else 1.0,
        "stock_density": _number(structure.get("stock_density")),  # stock phrases per 1,000 characters
        "specificity": _number(structure.get("specificity")),  # concrete facts per 1,000 characters
    }
    reasons = []
    if g.get("require_structure", True) and not structure.get("passed", False):
        reasons.append("结构检查未通过：" + "；".join(map(str, structure.get("problems", [])[:5])))
    if fig["copied"] > g.get("max_copied_sentences", 0):
        reasons.append(f"抄袭语料句子 {fig['copied']} 句（上限 {g.get('max_copied_sentences', 0)}）")
    if fig["copy_ratio"] > g.get("max_copy_ratio", 1.0):
        reasons.append(f"抄袭字数占比 {fig['copy_ratio']:.1%}（上限 {g['max_copy_ratio']:.0%}）")
    if fig["coverage"] < g.get("min_coverage", 0.0):
        missed = "、".join(c["problem"] for c in cov if not c["addressed"])
        reasons.append(f"问题覆盖 {fig['coverage']:.0%}（下限 {g['min_coverage']:.0%}），未涉及：{missed}")
    lo, hi = case.length
    if not lo <= fig["length"] <= hi:
        reasons.append(f"字数 {fig['length']} 不在 {lo}–{hi} 之间")
    if sections < case.min_sections:
        reasons.append(f"编号段落 {sections} 个，少于 {case.min_sections} 个")
    if banned:
        reasons.append("出现不应有的内容：" + "、".join(banned))
    if facts and fig["facts_used"] < g.get("min_facts_used", 0.0):
        reasons.append(f"引用情况说明中的数据 {len(cited)}/{len(facts)}（下限 {g['min_facts_used']:.0%}）")
    limit, value = g.get("max_stock_density"), fig["stock_density"]
    if limit is not None and value is not None and value > limit:
        reasons.append(f"套话密度 每千字 {value:.1f} 处（上限 {limit}）")
    limit, value = g.get("min_specificity"), fig["specificity"]
    if limit is not None and value is not None and value < limit:
        reasons.append(f"具体性 每千字 {value:.1f} 处（下限 {limit}）")
    return {"figures": fig, "reasons": reasons, "coverage": cov, "banned": banned, "facts": facts, "facts_cited": cited}


def _grams(text: str, k: int = 5) -> set[str]:
    t = norm(text)
    return {t[i : i + k] for i in range(len(t) - k + 1)}


def cross_similarity(texts: dict[str, str], k: int = 5) -> dict:
    """Pairwise character k-gram Jaccard and containment between texts of different ids: mean, max, closest pair."""
    grams = {key: _grams(t, k) for key, t in texts.items() if t}
    pairs = []
    for (a, ga), (b, gb) in itertools.combinations(grams.items(), 2):
        if ga and gb:
            shared = len(ga & gb)
            pairs.append((shared / len(ga | gb), max(shared / len(ga), shared / len(gb)), a, b))
    if not pairs:
        return {"pairs": 0, "mean_jaccard": 0.0, "max_jaccard": 0.0, "max_containment": 0.0, "closest": None}
    top = max(pairs)
    return {"pairs": len(pairs), "mean_jaccard": round(sum(p[0] for p in pairs) / len(pairs), 4),
            "max_jaccard": round(top[0], 4), "max_containment": round(max(p[1] for p in pairs), 4),
            "closest": [top[2], top[3]]}


def corpus_similarity(corpus_dir) -> dict:
    """The same figure for the corpus samples among themselves: the human baseline."""
    corpus = load_corpus(corpus_dir)
    return cross_similarity({s.id: "\n".join([s.preamble, *(i.text for i in s.items)]) for s in corpus.samples})


# -- running ---------------------------------------------------------------------------------------

def _write_json(path: Path | None, data: dict) -> None:
    """Write atomically, so a run killed mid-write leaves the previous complete file."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _cached(inner, config, use_cache: bool):
    if not use_cache:
        return inner
    from .cache import CachedChat

    settings = {"model": getattr(inner, "name", config.model), "base_url": config.base_url,
                "temperature": config.temperature, "seed": config.seed}
    return CachedChat(inner, config.cache / "responses", settings)


def _step_printer(progress):
    """Chain events -> one indented progress line per step and section (tokens are not shown)."""
    def on_event(event: dict) -> None:
        if event.get("type") == "step":
            progress(f"    {event.get('message', event.get('step', ''))}")
        elif event.get("type") == "section_start":
            progress(f"    写第 {event.get('index', 0) + 1} 条：{event.get('heading', '')}")

    return on_event if progress else None


def _draft_one(case: Case, config, chat, gates: dict, draft_fn, on_event=None) -> dict:
    """Draft and score one case; a model failure becomes a failed entry, not an aborted run."""
    start = time.perf_counter()
    hits, misses = getattr(chat, "hits", 0), getattr(chat, "misses", 0)
    entry = {"id": case.id, "seed": config.seed, "note": case.note}
    try:
        result = draft_fn(case.note, config, chat=chat, on_event=on_event)
    except ModelError as exc:
        return {**entry, "passed": False, "error": str(exc), "reasons": [f"起草失败：{exc}"], "draft": "",
                "figures": {"seconds": round(time.perf_counter() - start, 2)}}
    check = run_check(result.text, case.note, config)  # our own check of the final text, whatever the chain did
    scored = score_case(case, result.text, check, gates)
    stats = getattr(result, "stats", None) or {}
    scored["figures"].update(seconds=round(time.perf_counter() - start, 2), calls=stats.get("calls"),
                             prompt_tokens=stats.get("prompt_tokens"), completion_tokens=stats.get("completion_tokens"))
    return {**entry, "passed": not scored["reasons"], "draft": result.text, **scored,
            "copied": check.get("copy", {}).get("copied", []), "structure": check.get("structure", {}),
            "steps": stats.get("steps", {}), "record_path": str(getattr(result, "record_path", "") or ""),
            "cache": {"hits": getattr(chat, "hits", 0) - hits, "misses": getattr(chat, "misses", 0) - misses}}


def run_eval(cases: list[Case], config, *, chat=None, gates: dict | None = None, repeat: int = 1, use_cache: bool = True,
             out_json: str | Path | None = None, progress=None, draft_fn=None) -> dict:
    """Run every case `repeat` times and return {"entries", "summary", "settings", ...}.

    `chat` replaces the configured model (tests pass tests/fakes.py ScriptedChat); it is still wrapped
    in the response cache unless `use_cache` is False. `progress(message)` gets one line per case.
    """
    if not cases:
        raise InputError("没有要运行的评测用例。")
    if repeat < 1:
        raise InputError("--repeat 应是正整数。")
    gates = gates or load_gates()
    if draft_fn is None:
        from .chain import draft as draft_fn
    model = gates["model"]
    base = replace(config, temperature=float(model.get("temperature", 0.0)), seed=int(model.get("seed", 42)))
    out_json = Path(out_json) if out_json else None
    data = {"version": 1, "complete": False, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "settings": {**base.redacted(), "repeat": repeat, "cache": use_cache}, "gates": gates, "entries": []}
    start, total, done = time.perf_counter(), len(cases) * repeat, 0
    for rep in range(repeat):
        cfg = replace(base, seed=base.seed + rep)
        inner = chat
        if inner is None:
            from .llm import make_chat

            inner = make_chat(cfg)
        wrapped = _cached(inner, cfg, use_cache)
        try:
            for case in cases:
                done += 1
                if progress:
                    progress(f"[{done}/{total}] {case.id}" + (f"（第 {rep + 1}/{repeat} 轮）" if repeat > 1 else "") + " 起草中…")
                entry = {**_draft_one(case, cfg, wrapped, gates, draft_fn, _step_printer(progress)), "rep": rep}
                data["entries"].append(entry)
                _write_json(out_json, data)
                if progress:
                    verdict = "通过" if entry["passed"] else "未通过：" + "；".join(entry["reasons"])[:120]
                    progress(f"[{done}/{total}] {case.id} {verdict}（{entry['figures']['seconds']:.1f} 秒，"
                             f"已用 {clock(time.perf_counter() - start)}）")
        finally:
            if chat is None and hasattr(inner, "close"):
                inner.close()
    data["summary"] = summarize(data["entries"], gates, corpus_similarity(base.corpus))
    data["summary"]["seconds"] = round(time.perf_counter() - start, 1)
    data["complete"] = True
    _write_json(out_json, data)
    return data


def _spread(values: list) -> list | None:
    values = [v for v in values if v is not None]
    return [min(values), round(sum(values) / len(values), 4), max(values)] if values else None


def summarize(entries: list[dict], gates: dict, corpus_sim: dict) -> dict:
    """Per case pass rate and figure spread; per run totals, cross-draft similarity, suite gates."""
    suite = gates["suite"]
    ids = list(dict.fromkeys(e["id"] for e in entries))
    per_case = {}
    for cid in ids:
        runs = [e for e in entries if e["id"] == cid]
        rate = sum(e["passed"] for e in runs) / len(runs)
        per_case[cid] = {
            "runs": len(runs), "pass_rate": round(rate, 3), "passed": rate >= suite.get("repeat_min_pass_rate", 1.0),
            "reasons": list(dict.fromkeys(r for e in runs for r in e["reasons"])),
            "spread": {f: _spread([e["figures"].get(f) for e in runs]) for f in FIGURES},
        }
    reps = sorted({e["rep"] for e in entries})
    by_rep = [cross_similarity({e["id"]: e["draft"] for e in entries if e["rep"] == r}) for r in reps]
    worst = max(by_rep, key=lambda c: c["max_jaccard"])
    failures = []
    if worst["max_jaccard"] > suite.get("max_cross_jaccard", 1.0):
        failures.append(f"不同单位的初稿过于相似：{' 与 '.join(worst['closest'])} 的 5 字片段 Jaccard "
                        f"{worst['max_jaccard']:.3f}（上限 {suite['max_cross_jaccard']}，范文之间最高 {corpus_sim['max_jaccard']:.3f}）")
    if worst["max_containment"] > suite.get("max_cross_containment", 1.0):
        failures.append(f"某篇初稿 {worst['max_containment']:.0%} 的 5 字片段出现在另一单位的初稿里（上限 {suite['max_cross_containment']:.0%}）")
    totals = {k: sum(e["figures"].get(k) or 0 for e in entries) for k in ("calls", "prompt_tokens", "completion_tokens")}
    totals.update(hits=sum(e.get("cache", {}).get("hits", 0) for e in entries),
                  misses=sum(e.get("cache", {}).get("misses", 0) for e in entries))
    return {
        "cases": per_case, "cases_passed": sum(c["passed"] for c in per_case.values()), "cases_total": len(per_case),
        "pass_rate": round(sum(e["passed"] for e in entries) / len(entries), 3) if entries else 0.0,
        "cross": {"drafts": worst, "by_rep": by_rep, "corpus": corpus_sim}, "suite_failures": failures, "totals": totals,
        "passed": bool(per_case) and all(c["passed"] for c in per_case.values()) and not failures,
    }


# -- baseline --------------------------------------------------------------------------------------

def load_baseline(path: str | Path) -> dict:
    """A previous `--json` result; only its summary is used."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"找不到基线文件「{path}」，请先用 poxi eval --json {path} 生成。") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"基线文件「{path}」不是合法的 JSON：{exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("summary", {}).get("cases"), dict):
        raise InputError(f"基线文件「{path}」不是完整的 poxi eval --json 结果（缺少 summary），请重新生成。")
    return data


def _worse(name: str, before, after, margin) -> bool:
    if before is None or after is None or margin is None:
        return False
    return before - after > margin if name in HIGHER_BETTER else after - before > margin


def compare_baseline(current: dict, baseline: dict, margins: dict) -> list[str]:
    """Regressions, in Chinese: a case that passed before fails now, or a figure moved past its margin."""
    now, before = current["summary"], baseline["summary"]
    out = []
    for cid, case in now["cases"].items():
        prev = before["cases"].get(cid)
        if prev is None:
            continue
        if prev.get("passed") and not case["passed"]:
            out.append(f"用例 {cid} 之前通过，现在未通过：" + "；".join(case["reasons"])[:200])
        for name, margin in margins.items():
            if name not in FIGURES:
                continue
            a, b = (prev.get("spread") or {}).get(name), case["spread"].get(name)
            if a and b and _worse(name, a[1], b[1], margin):
                out.append(f"用例 {cid} 的 {name} 从 {a[1]} 变为 {b[1]}（允许变化 {margin}）")
    if _worse("pass_rate", before.get("pass_rate"), now["pass_rate"], margins.get("pass_rate")):
        out.append(f"通过率从 {before['pass_rate']:.0%} 降到 {now['pass_rate']:.0%}")
    for name in ("max_jaccard", "max_containment"):
        a, b = before.get("cross", {}).get("drafts", {}).get(name), now["cross"]["drafts"][name]
        if _worse(name, a, b, margins.get(f"cross_{name}")):
            out.append(f"初稿之间的相似度 {name} 从 {a} 升到 {b}（允许 {margins[f'cross_{name}']}）")
    return out


# -- command ---------------------------------------------------------------------------------------

def run_eval_cli(config, args) -> int:
    """`poxi eval`: 0 all gates pass, 1 a gate failed or a baseline regression, 2 unusable input (raised)."""
    import sys

    gates = load_gates(getattr(args, "gates", None))
    cases = load_cases(args.cases, only=args.only, defaults=gates["case"])
    baseline = load_baseline(args.baseline) if args.baseline else None  # fail fast, before hours of drafting
    out_json = Path(args.json) if args.json else config.home / "evals" / "last.json"

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    progress(f"评测 {len(cases)} 个用例 × {args.repeat} 轮，结果逐个写入 {out_json}")
    data = run_eval(cases, config, gates=gates, repeat=args.repeat, use_cache=not args.no_cache,
                    out_json=out_json, progress=progress)
    regressions = compare_baseline(data, baseline, gates["margins"]) if baseline else []
    data["regressions"] = regressions
    _write_json(out_json, data)
    print(format_table(data))
    for line in regressions:
        print(f"退步：{line}")
    if args.junit:
        write_junit(data, args.junit)
    if args.report:
        write_report(data, args.report)
    return 0 if data["summary"]["passed"] and not regressions else 1
