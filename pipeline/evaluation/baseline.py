"""Baseline comparison for `poxi eval --baseline`: what got worse since a previous `--json` result.

A case that passed before and fails now, a figure that moved the wrong way by more than its margin
(evals/config.yaml `margins`), the pass rate, the cross-draft similarity. A comparison is compared
model by model, by name. Left out: improvements (the report shows the figures themselves).
"""

import json
from pathlib import Path

from pipeline.errors import InputError
from pipeline.evaluation.score import FIGURES

HIGHER_BETTER = {"coverage", "facts_used", "specificity", "pass_rate"}  # the rest: lower is better in margins


def load_baseline(path: str | Path) -> dict:
    """A previous `--json` result (one model, or a comparison); only the summaries are used."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"找不到基线文件「{path}」，请先用 poxi eval --json {path} 生成。") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"基线文件「{path}」不是合法的 JSON：{exc}") from None
    runs = list(data["models"].values()) if isinstance(data, dict) and isinstance(data.get("models"), dict) else [data]
    if not all(isinstance(r, dict) and isinstance((r.get("summary") or {}).get("cases"), dict) for r in runs):
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


def regressions_against(data: dict, baseline: dict, margins: dict) -> list[str]:
    """Baseline regressions of a run; a comparison is compared model by model, by name."""
    if "models" not in data:
        return compare_baseline(data, baseline, margins) if "summary" in baseline else []
    before = baseline.get("models") or {}
    return [f"{name}：{line}" for name, run in data["models"].items() if name in before
            for line in compare_baseline(run, before[name], margins)]
