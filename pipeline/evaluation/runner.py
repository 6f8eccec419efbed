"""The eval runner: draft every case on every model, score each draft, gate CI on the scores.

Cases and gates come from cases.py, scores from score.py, the models compared from
models.py, the optional rubric grader from judge.py, baseline regressions from baseline.py
and every output from report.py; this module only runs and aggregates. Every case is drafted with
fixed temperature and seed through a response cache (pipeline/cache.py, keyed on the model, its
endpoint and the exact messages). Results go to JSON after every case, so a killed run keeps what it
finished.

One model: `run_eval` returns {"entries", "summary", ...} as always. Several models or prompt sets:
`run_compare` returns {"models": {name: {"spec", "entries", "summary", ...}}}. The embedded model drafts
one case at a time; a remote endpoint may draft `workers` cases at once, and the entries still come out
in case order, so the report matches a sequential run's.

Left out: resuming a killed run (the response cache makes a rerun cheap instead), running two models at
the same time (one after the other keeps the embedded model alone on the cores).
"""

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from pipeline.config import redact_url
from pipeline.errors import InputError, ModelError
from pipeline.evaluation.baseline import load_baseline, regressions_against
from pipeline.evaluation.cases import Case, load_cases, load_gates
from pipeline.evaluation.models import ChatPool, ModelSpec, check_keys, plan_models, spec_config
from pipeline.evaluation.report import clock, format_table, write_junit, write_report
from pipeline.evaluation.score import (FIGURES, FIRST_WRITTEN, KIND_NAMES, corpus_similarity, cross_similarity, run_check,
                                       score_case)
from pipeline.model.client import constraint_of
from pipeline.textio import write_json


def _write_json(path: Path | None, data: dict) -> None:
    """Write atomically (textio.write_json), so a run killed mid-write leaves the previous complete file."""
    if path is not None:
        write_json(path, data, indent=1)


def _cached(inner, config, use_cache: bool, **extra):
    """The chat wrapped in the response cache; one wrapper per case, so its hit counts are that case's."""
    if not use_cache:
        return inner
    from pipeline.cache import CachedChat

    settings = {"model": getattr(inner, "name", config.model), "base_url": config.base_url,
                "temperature": config.temperature, "seed": config.seed, **extra}
    if config.frequency_penalty is not None:  # only when set, so entries written before the setting still hit
        settings["frequency_penalty"] = config.frequency_penalty
    return CachedChat(inner, config.cache / "responses", settings)


def _step_printer(progress):
    """Chain events -> one indented progress line per step and section (tokens are not shown)."""
    def on_event(event: dict) -> None:
        if event.get("type") == "step":
            progress(f"    {event.get('message', event.get('step', ''))}")
        elif event.get("type") == "section_start":
            progress(f"    写第 {event.get('index', 0) + 1} 条：{event.get('heading', '')}")

    return on_event if progress else None


def _draft_one(case: Case, config, inner, gates: dict, draft_fn, use_cache: bool, on_event=None) -> dict:
    """Draft and score one case; a model failure becomes a failed entry, not an aborted run."""
    from pipeline.deadline import Budget, TimedChat
    from pipeline.errors import DeadlineExceeded

    start = time.perf_counter()
    cached = _cached(inner, config, use_cache)

    def waiting(seconds: float, left: float | None) -> None:  # a call that keeps the suite waiting is shown
        limit = f"，本用例最多还等 {left:.0f} 秒" if left is not None else ""
        on_event({"type": "step", "step": "model", "message": f"等待模型回复：已 {seconds:.0f} 秒{limit}"})

    budget = Budget(config.draft_deadline, f"用例「{case.id}」的起草", "POXI_DRAFT_DEADLINE")
    chat = TimedChat(cached, budget, on_wait=waiting if on_event else None)
    entry = {"id": case.id, "seed": config.seed, "note": case.note}
    try:
        result = draft_fn(case.note, config, chat=chat, on_event=on_event)
    except (ModelError, DeadlineExceeded) as exc:  # a hung endpoint fails this case, not the whole suite
        return {**entry, "passed": False, "error": str(exc), "reasons": [f"起草失败：{exc}"], "draft": "",
                "figures": {"seconds": round(time.perf_counter() - start, 2)}}
    check = run_check(result.text, case.note, config)  # our own check of the final text, whatever the chain did
    scored = score_case(case, result.text, check, gates)
    stats = getattr(result, "stats", None) or {}
    scored["figures"].update(seconds=round(time.perf_counter() - start, 2), calls=stats.get("calls"),
                             prompt_tokens=stats.get("prompt_tokens"), completion_tokens=stats.get("completion_tokens"),
                             **{k: stats.get(k) for k in FIRST_WRITTEN})
    return {**entry, "passed": not scored["reasons"], "draft": result.text, **scored,
            "copied": check.get("copy", {}).get("copied", []), "structure": check.get("structure", {}),
            "rejected": _rejected(getattr(result, "sections", None) or []),
            "steps": stats.get("steps", {}), "record_path": str(getattr(result, "record_path", "") or ""),
            "cache": {"hits": getattr(cached, "hits", 0), "misses": getattr(cached, "misses", 0)}}


def _rejected(sections: list[dict]) -> list[dict]:
    """Every clause the chain refused (first written or regenerated), with why: what repair took out."""
    links = [{"section": sec.get("number"), "attempt": a["attempt"], "text": r["text"], "reasons": r["reasons"]}
             for sec in sections for a in sec.get("attempts", []) for r in (a.get("rejected") or {}).values()]
    moves = [{"section": sec.get("number"), "attempt": a["attempt"], "text": a["text"], "reasons": a["reasons"]}
             for sec in sections for m in sec.get("moves", []) for a in m["attempts"] if a.get("reasons")]
    return links + moves


def run_eval(cases: list[Case], config, *, chat=None, gates: dict | None = None, repeat: int = 1, use_cache: bool = True,
             out_json: str | Path | None = None, progress=None, draft_fn=None, workers: int = 1, embedded: bool | None = None,
             pool: ChatPool | None = None, corpus_sim: dict | None = None, on_update=None) -> dict:
    """Run every case `repeat` times on one model and return {"entries", "summary", "settings", ...}.

    `chat` replaces the configured model (tests pass tests/fakes.py ScriptedChat); it is still wrapped
    in the response cache unless `use_cache` is False. `progress(message)` gets one line per case;
    `on_update(data)` gets the data after every case. `workers` > 1 drafts that many cases at once,
    except on the embedded model (`embedded`, default: no base URL configured), which runs one at a time.
    """
    # one function: `finished`, `one` and `starting` share the run's state (data, counter, lock)
    if not cases:
        raise InputError("没有要运行的评测用例。")
    if repeat < 1:
        raise InputError("--repeat 应是正整数。")
    if workers < 1:
        raise InputError("--workers 应是正整数。")
    gates = gates or load_gates()
    if draft_fn is None:
        from pipeline.drafting.chain import draft as draft_fn
    model = gates["model"]
    base = replace(config, temperature=float(model.get("temperature", 0.0)), seed=int(model.get("seed", 42)))
    embedded = not base.base_url if embedded is None else embedded
    workers = 1 if embedded else workers
    out_json = Path(out_json) if out_json else None
    data = {"version": 1, "complete": False, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "settings": {**base.redacted(), "repeat": repeat, "cache": use_cache, "workers": workers},
            "gates": gates, "entries": []}
    order = {c.id: i for i, c in enumerate(cases)}
    start, total, lock, done = time.perf_counter(), len(cases) * repeat, threading.Lock(), [0]
    own_pool = pool is None
    pool = pool or ChatPool()

    def finished(entry: dict) -> None:
        with lock:
            done[0] += 1
            data["entries"].append(entry)
            data["entries"].sort(key=lambda e: (e["rep"], order[e["id"]]))  # case order, however they finish
            _write_json(out_json, data)
            if on_update:
                on_update(data)
            if progress:
                verdict = "通过" if entry["passed"] else "未通过：" + "；".join(entry["reasons"])[:120]
                progress(f"[{done[0]}/{total}] {entry['id']} {verdict}（{entry['figures']['seconds']:.1f} 秒，"
                         f"已用 {clock(time.perf_counter() - start)}）")

    try:
        for rep in range(repeat):
            cfg = replace(base, seed=base.seed + rep)
            inner = chat if chat is not None else pool.get(cfg)
            if rep == 0:  # what the endpoint is held to (probed once): in each arm's settings and its first line
                data["settings"]["constraint"] = constraint_of(inner)
                if progress and data["settings"]["constraint"]:
                    progress(data["settings"]["constraint"]["summary"])
            label = f"（第 {rep + 1}/{repeat} 轮）" if repeat > 1 else ""

            def one(case: Case, steps=True) -> dict:
                printer = _step_printer(progress) if steps else None
                return {**_draft_one(case, cfg, inner, gates, draft_fn, use_cache, printer), "rep": rep}

            def starting(case: Case | None) -> None:
                if progress:
                    progress(f"[{done[0] + 1}/{total}] {case.id}{label} 起草中…" if case else
                             f"其余 {len(cases) - 1} 个用例{label}同时起草（{workers} 路）…")

            _round(cases, one, finished, workers, starting)
    finally:
        if own_pool:
            pool.close()
    data["summary"] = summarize(data["entries"], gates, corpus_sim or corpus_similarity(base.corpus))
    data["summary"]["seconds"] = round(time.perf_counter() - start, 1)
    data["complete"] = True
    _write_json(out_json, data)
    if on_update:
        on_update(data)
    return data


def _round(cases: list[Case], one, finished, workers: int, starting) -> None:
    """One round over the cases: the first alone (it starts the client and builds the indexes the others
    share), then the rest one by one or `workers` at once. `starting(case)` announces a case (None: the batch)."""
    starting(cases[0])
    finished(one(cases[0]))
    if workers == 1:
        for case in cases[1:]:
            starting(case)
            finished(one(case))
    elif cases[1:]:
        starting(None)
        with ThreadPoolExecutor(workers) as ex:
            for future in as_completed([ex.submit(one, c, False) for c in cases[1:]]):
                finished(future.result())


def run_compare(cases: list[Case], config, specs: list[ModelSpec], *, gates: dict | None = None, repeat: int = 1,
                use_cache: bool = True, out_json: str | Path | None = None, progress=None, draft_fn=None,
                workers: int = 1, chat_for=None) -> dict:
    """Every case on every model, one model after the other: {"models": {name: run_eval's data}, ...}.

    `chat_for(spec, config)` supplies a model's chat (tests); default: one per endpoint from a shared pool.
    """
    gates = gates or load_gates()
    out_json = Path(out_json) if out_json else None
    data = {"version": 2, "complete": False, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cases": [c.id for c in cases], "gates": gates, "models": {}, "warnings": []}
    corpus_sim = corpus_similarity(config.corpus)
    pool = ChatPool()
    try:
        for spec in specs:
            cfg = spec_config(config, spec)
            if progress:
                where = "内置模型" if spec.embedded else f"{redact_url(spec.base_url)} {spec.model or ''}".strip()
                progress(f"== 模型 {spec.name}（{where}" + (f"，提示词 {spec.prompts_dir}" if spec.prompts_dir else "") + "）==")

            def update(partial, spec=spec):
                data["models"][spec.name] = {"spec": spec.to_dict(), **{k: v for k, v in partial.items() if k != "gates"}}
                _write_json(out_json, data)

            run_eval(cases, cfg, chat=chat_for(spec, cfg) if chat_for else None, gates=gates, repeat=repeat,
                     use_cache=use_cache, progress=progress, draft_fn=draft_fn, workers=workers,
                     embedded=spec.embedded, pool=pool, corpus_sim=corpus_sim, on_update=update)
    finally:
        pool.close()
    data["warnings"] = _same_drafts(specs, data["models"])
    data["complete"] = True
    _write_json(out_json, data)
    return data


def _same_drafts(specs: list[ModelSpec], models: dict) -> list[str]:
    """A prompt twin whose drafts equal its model's: the chain did not read Config.prompts_dir."""
    out = []
    for spec in specs:
        base = next((s for s in specs if spec.prompts_dir and s.base_url == spec.base_url and s.model == spec.model
                     and not s.prompts_dir), None)
        if base is None:
            continue
        mine, theirs = ([e["draft"] for e in models[n]["entries"]] for n in (spec.name, base.name))
        if mine == theirs and any(mine):
            out.append(f"{spec.name} 与 {base.name} 的初稿完全相同：起草链可能没有读取 Config.prompts_dir，提示词对比无效。")
    return out


def run_judge(data: dict, config, judge: ModelSpec, *, rubric_path=None, use_cache: bool = True, workers: int = 1,
              progress=None, chat=None) -> None:
    """Score every draft of a run (one model or a comparison) with the rubric grader; adds
    entry["judge"] and summary["judge"] per model. Informs only: no pass or fail changes."""
    from pipeline.evaluation.judge import judge_entries, judge_summary, load_rubric

    rubric = load_rubric(rubric_path)
    cfg = replace(spec_config(config, judge), temperature=0.0)
    pool = ChatPool()
    try:
        inner = chat if chat is not None else pool.get(cfg)
        cached = _cached(inner, cfg, use_cache, role="judge", rubric=rubric.version)
        runs = data["models"].values() if "models" in data else [data]
        for run in runs:
            if progress:
                progress(f"评分模型 {judge.name} 按 evals/rubric.yaml 打分：{run.get('spec', {}).get('name', '')}")
            judge_entries(run["entries"], cached, rubric, workers=1 if judge.embedded else workers, progress=progress)
            run["summary"]["judge"] = judge_summary(run["entries"], rubric)
    finally:
        pool.close()
    data["judge"] = {"model": judge.to_dict(), "rubric": rubric.version,
                     "criteria": {c.id: {"name": c.name, "audit_kinds": list(c.audit_kinds)} for c in rubric.criteria},
                     "pass_score": rubric.pass_score}


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
    totals = {k: sum(e["figures"].get(k) or 0 for e in entries)
              for k in ("calls", "prompt_tokens", "completion_tokens", "sections", *FIRST_WRITTEN)}
    totals.update(hits=sum(e.get("cache", {}).get("hits", 0) for e in entries),
                  misses=sum(e.get("cache", {}).get("misses", 0) for e in entries))
    drafted = [e for e in entries if e.get("draft")]
    mean = lambda f: _mean([e["figures"].get(f) for e in drafted])  # noqa: E731
    return {
        "means": {f: mean(f) for f in ("coverage", "facts_used", "copy_ratio", "length")},
        "median_seconds": round(statistics.median(e["figures"]["seconds"] for e in drafted), 2) if drafted else None,
        "audit": _audit_summary(drafted, gates.get("audit") or {}),
        "cases": per_case, "cases_passed": sum(c["passed"] for c in per_case.values()), "cases_total": len(per_case),
        "pass_rate": round(sum(e["passed"] for e in entries) / len(entries), 3) if entries else 0.0,
        "cross": {"drafts": worst, "by_rep": by_rep, "corpus": corpus_sim}, "suite_failures": failures, "totals": totals,
        "passed": bool(per_case) and all(c["passed"] for c in per_case.values()) and not failures,
    }



def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def _audit_summary(drafted: list[dict], gate: dict) -> dict | None:
    """Genre-audit findings per kind over a run's drafts; None when the check had no audit."""
    counts = [e["audit"]["counts"] for e in drafted if (e.get("audit") or {}).get("counts") is not None]
    if not counts:
        return None
    kinds = list(dict.fromkeys([*(k for k in KIND_NAMES if any(k in c for c in counts)), *(k for c in counts for k in c)]))
    per_kind = {k: sum(c.get(k, 0) for c in counts) for k in kinds}
    return {"counts": per_kind, "total": sum(per_kind.values()), "drafts": len(counts),
            "clean": sum(not any(c.values()) for c in counts), "mode": gate.get("mode", "report"),
            "max_findings": gate.get("max_findings", 0)}


# -- command ---------------------------------------------------------------------------------------

def judge_spec(name: str, specs: list[ModelSpec], gates: dict) -> ModelSpec:
    """--judge NAME: a model of this run or of the `models:` list, `embedded`, or a full NAME=URL[@MODEL]."""
    from pipeline.evaluation.models import EMBEDDED, parse_compare, specs_from_gates

    if "=" in name:
        return parse_compare(name)
    known = {s.name: s for s in [*specs_from_gates(gates), *specs] if not s.prompts_dir}
    if name in known:
        return known[name]
    if name == EMBEDDED:
        return ModelSpec(EMBEDDED)
    raise InputError(f"--judge「{name}」不是本次对比中的模型，也不在 evals/config.yaml 的 models 里；"
                     f"可写成 --judge 名称=接口地址[@模型名]。")


def run_eval_cli(config, args) -> int:
    """`poxi eval`: 0 all gates pass (every model's), 1 a gate failed or a baseline regression, 2 unusable input."""
    import sys

    gates = load_gates(getattr(args, "gates", None))
    cases = load_cases(args.cases, only=args.only, defaults=gates["case"])
    compare, prompts = getattr(args, "compare", None), getattr(args, "prompts", None)
    specs = plan_models(config, gates, compare, prompts)
    judge = judge_spec(args.judge, specs, gates) if getattr(args, "judge", None) else None
    check_keys(config, specs + ([judge] if judge else []))
    baseline = load_baseline(args.baseline) if args.baseline else None  # fail fast, before hours of drafting
    out_json = Path(args.json) if args.json else config.home / "evals" / "last.json"
    workers = getattr(args, "workers", None) or 1

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    progress(f"评测 {len(cases)} 个用例 × {args.repeat} 轮 × {len(specs)} 个模型，结果逐个写入 {out_json}")
    common = dict(gates=gates, repeat=args.repeat, use_cache=not args.no_cache, out_json=out_json, progress=progress)
    if compare or prompts or gates.get("models"):
        data = run_compare(cases, config, specs, workers=workers, **common)
    else:
        data = run_eval(cases, config, workers=workers, **common)
    if judge:
        run_judge(data, config, judge, use_cache=not args.no_cache, workers=workers, progress=progress)
    regressions = regressions_against(data, baseline, gates["margins"]) if baseline else []
    data["regressions"] = regressions
    _write_json(out_json, data)
    print(format_table(data))
    for line in data.get("warnings", []):
        print(f"注意：{line}")
    for line in regressions:
        print(f"退步：{line}")
    if args.junit:
        write_junit(data, args.junit)
    if args.report:
        write_report(data, args.report)
    runs = data["models"].values() if "models" in data else [data]
    return 0 if all(r["summary"]["passed"] for r in runs) and not regressions else 1
