"""Eval evaluators: one function per concern, each turning a draft into figures and Chinese reasons.

Coverage of the case's expected problems, the note's figures cited, forbidden phrases, the copy and
structure checks and the genre audit (both through pipeline/check.py), and across drafts how alike
they are. Every score is deterministic text arithmetic. Left out: running models (runner.py), the
model-graded rubric (evaljudge.py), formatting (evalreport.py).
"""

import functools
import itertools
import re
import unicodedata

from pipeline.checks.audit import KINDS, NAMES
from pipeline.corpus.samples import load_corpus, parse_items, split_sentences
from pipeline.evaluation.cases import Case

# the chain's run stats on how the model first wrote a draft (before any clause was written again or cut)
FIRST_WRITTEN = ("links", "first_failed_sections", "first_failed_links", "regenerated", "moves", "first_failed_moves")
FIGURES = ("coverage", "copied", "copy_ratio", "length", "sections", "section_median", "own_share", "facts_used",
           "stock_density", "specificity",
           "audit_findings", *FIRST_WRITTEN, "seconds", "calls", "prompt_tokens", "completion_tokens")  # per draft, in every entry's "figures"
KIND_NAMES = {k: NAMES.get(k, k) for k in KINDS}  # the genre audit's kinds -> the short Chinese labels it uses


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
    from pipeline.checks.runner import check_text

    return check_text(text, corpus_dir=config.corpus, note_text=note, cache_dir=config.cache).to_dict()


def audit_counts(check: dict) -> dict | None:
    """Findings per kind from check_text(...).to_dict()["audit"]; None when the check has no audit."""
    audit = check.get("audit")
    if not isinstance(audit, dict):
        return None
    counts = audit.get("counts")
    if isinstance(counts, dict):
        return {str(k): int(v) for k, v in counts.items()}
    out: dict[str, int] = {}
    for section in audit.get("sections") or []:
        for finding in section.get("findings") or []:
            out[finding.get("kind", "?")] = out.get(finding.get("kind", "?"), 0) + 1
    return out


def audit_reasons(counts: dict | None, gate: dict) -> list[str]:
    """The audit gate: kinds over their limit (`max_findings`: one int for every kind, or kind -> int)."""
    if not counts:
        return []
    limit = gate.get("max_findings", 0)
    over = [(k, n) for k, n in counts.items() if n > (limit.get(k, 0) if isinstance(limit, dict) else limit)]
    if not over:
        return []
    shown = "、".join(f"{KIND_NAMES.get(k, k)}（{k}）{n} 处" for k, n in over)
    return [f"体裁审查发现 {shown}（每类上限 {limit if isinstance(limit, int) else '见 audit.max_findings'}）"]


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
        "section_median": section_median(text),
        "own_share": own_share(text, case.note),
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
    counts = audit_counts(check)
    fig["audit_findings"] = sum(counts.values()) if counts is not None else None
    gate = gates.get("audit") or {"max_findings": 0, "mode": "report"}
    found = audit_reasons(counts, gate)
    if gate.get("mode", "report") == "gate":
        reasons += found
    audit = {"counts": counts, "notes": found if gate.get("mode", "report") != "gate" else [],
             "sections": (check.get("audit") or {}).get("sections", []), "passed": (check.get("audit") or {}).get("passed")}
    return {"figures": fig, "reasons": reasons, "coverage": cov, "banned": banned, "facts": facts, "facts_cited": cited,
            "audit": audit}


def section_median(text: str) -> int:
    """The median length of the draft's numbered sections, whitespace excluded (the genre's items: 155)."""
    import statistics

    items = parse_items(text, "draft")[1]
    return int(statistics.median(len(re.sub(r"\s", "", i.text)) for i in items)) if items else 0


@functools.lru_cache(maxsize=1)
def fixed_words() -> tuple[str, ...]:
    """Words a draft holds that the model did not write: every root poxi offers, the links' connectives and
    openings, and the frames' fixed words. Read once: every case of an eval asks for them."""
    from pipeline.drafting import links
    from pipeline.corpus.samples import DimensionTagger
    from pipeline.drafting.moves import DEFAULT_FRAMES

    import yaml

    frames = yaml.safe_load(DEFAULT_FRAMES.read_text(encoding="utf-8"))["frames"]
    pieces = [p for f in frames for p in re.split(r"\{\w+\}", f["template"])]
    roots = [r for rs in DimensionTagger().roots.values() for r in rs]
    return tuple(w for w in map(norm, [*roots, *links.CONNECTORS, *links.TAIL_STARTS, links.THEN, *pieces]) if w)


def own_share(text: str, note: str, run: int = 8) -> float:
    """The share of the draft's characters (letters and CJK only) that the model wrote itself: not inside a
    run of `run`+ characters of the note, not a root, a connective or a frame's fixed words (自写占比)."""
    t, n = norm(text), norm(note)
    mine = [True] * len(t)
    i = 0
    while i < len(t):  # the longest note run from each position
        j = i
        while j < len(t) and t[i : j + 1] in n:
            j += 1
        if j - i >= run:
            mine[i:j] = [False] * (j - i)
            i = j
        else:
            i += 1
    for word in fixed_words():
        for m in re.finditer(re.escape(word), t):
            mine[m.start() : m.end()] = [False] * len(word)
    return round(sum(mine) / len(t), 3) if t else 0.0


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
