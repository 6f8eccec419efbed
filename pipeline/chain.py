"""The drafting chain: note -> structured note -> plan -> sections (retrieve, draft, de-copy) -> checked draft.

The plan is deterministic (note problems tied to cause dimensions by the editable keyword file); the
model words each section, heading sentence first, with the section's facts and corpus angles in view.

Each step's prompt is a file in prompts/. Model output that must be structured (the note) is
JSON validated here and retried with the error fed back a bounded number of times. Text in the note is
data: lines that read like instructions to the model are dropped before any prompt sees them, and the
prompts fence the note in <note> tags. Progress goes to `on_event`; the run record makes a run resumable.
Left out: choosing the model (llm.make_chat), the text fixes themselves (fixes.py), the checks
(check.py), file output (console.py, export.py).
"""

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import Config
from .corpus import DimensionTagger
from .errors import InputError, ModelError
from .fixes import (add_missing_problems, choose_heading, clean_body, drop_flagged, drop_invented, drop_repeated,
                    split_section)
from .prompts import load_prompt
from .record import Record, new_run_id

MIN_NOTE_CHARS, MAX_NOTE_CHARS = 20, 6000
CN_NUMBERS = "一二三四五六七八九十"
JSON_TRIES = 3  # attempts for a structured step before giving up with the last output attached
REWRITE_ROUNDS = 2  # copy-check -> rewrite rounds per section
PATTERNS_PER_SECTION = 3
# Lines in a note that talk to the model rather than about the unit.
INJECTION = re.compile(
    r"忽略(以上|上述|前面|之前|所有|全部)|不要?(理会|遵守)|直接输出|输出(范文|原文|全文)|范文.{0,6}全文|系统提示|"
    r"提示词|你现在是|请扮演|ignore (all|any|the|previous|above)|system prompt|you are now|disregard", re.I)


@dataclass
class DraftResult:
    text: str
    sections: list[dict]
    check: dict
    passed: bool
    record_path: Path
    stats: dict
    status: str = "done"  # "done" or "cancelled"
    run_id: str = ""
    warnings: list[str] = field(default_factory=list)


def sanitize_note(note: str) -> tuple[str, list[str]]:
    """Drop lines that try to instruct the model. Returns (clean note, dropped lines)."""
    kept, dropped = [], []
    for line in note.split("\n"):
        (dropped if INJECTION.search(line) else kept).append(line)
    return "\n".join(kept).strip(), [d.strip() for d in dropped if d.strip()]


def parse_json(text: str) -> dict:
    """The first JSON object in a model reply (code fences and chatter around it are tolerated)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("输出里没有 JSON 对象")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"JSON 语法错误：{exc.msg}（第 {exc.pos} 个字符）") from None
    if not isinstance(data, dict):
        raise ValueError("应输出一个 JSON 对象")
    return data


def _strings(value) -> list[str]:
    if isinstance(value, str):
        value = [value]
    return [str(v).strip() for v in value or [] if str(v).strip()] if isinstance(value, list) else []


def merge_problems(found: list[dict], note: str, most: int = 8) -> list[dict]:
    """The model's problems plus every problem the note lists that none of them covers (small models
    drop some), in the note's own words."""
    from .structure import extract_note_problems, problem_coverage

    said = "。".join(p["title"] + "：" + "；".join(p["facts"]) for p in found)
    missing = [line for line, ok in problem_coverage(said, extract_note_problems(note)) if not ok]
    return (found + [{"title": line[:20], "facts": [line]} for line in missing])[:most]


def validate_note(data: dict) -> dict:
    """The read_note schema: unit, unit_kind, meeting, year, theme, problems[{title, facts[]}]."""
    problems = []
    for p in data.get("problems") or []:
        if isinstance(p, str):
            p = {"title": p}
        if not isinstance(p, dict) or not str(p.get("title", "")).strip():
            raise ValueError("problems 中每一项都要有非空的 title")
        problems.append({"title": str(p["title"]).strip()[:60], "facts": _strings(p.get("facts"))})
    if not problems:
        raise ValueError("problems 不能为空：请逐条列出说明中查摆的问题")
    return {
        "unit": str(data.get("unit") or "").strip() or "本单位", "unit_kind": str(data.get("unit_kind") or "").strip(),
        "meeting": str(data.get("meeting") or "").strip() or "民主生活会",
        "year": re.sub(r"年度?$", "", str(data.get("year") or "").strip()),
        "theme": str(data.get("theme") or "").strip(), "problems": problems[:8],
    }


def plan_sections(problems: list[dict], tagger: DimensionTagger, lo: int = 4, hi: int = 6) -> list[dict]:
    """Assign the note's problems to cause dimensions, deterministically: the tagger's `always` dimensions,
    then each problem's best dimension, topped up to `lo` by the note's next strongest dimensions and
    capped at `hi`. Sections follow the dimension file's order; each problem goes to its best chosen one,
    and a problem no keyword matches goes to the section with the fewest problems.

    Example: 4 problems about study, the masses, style and discipline -> 4–5 sections, one per dimension.
    """
    scores = [tagger.scores(p["title"], "；".join(p["facts"])) for p in problems]
    best = [max(tagger.names, key=lambda d: (s[d], -tagger.names.index(d))) if max(s.values()) else None for s in scores]
    chosen = list(dict.fromkeys(tagger.always + [b for b in best if b]))
    total = {d: sum(s[d] for s in scores) for d in tagger.names}
    for d in sorted(tagger.names, key=lambda d: -total[d]):
        if len(chosen) >= lo:
            break
        if d not in chosen:
            chosen.append(d)
    while len(chosen) > hi:  # drop the dimension the fewest problems chose, never an `always` one
        chosen.remove(min((d for d in chosen if d not in tagger.always), key=lambda d: (best.count(d), total[d])))
    chosen.sort(key=tagger.names.index)
    sections = [{"dimension": d, "problems": []} for d in chosen]
    for n, s in enumerate(scores, 1):
        if best[n - 1]:
            max(sections, key=lambda sec: s[sec["dimension"]])["problems"].append(n)
    for n in (n for n, b in enumerate(best, 1) if b is None):  # no keyword at all: to the emptiest section
        min(sections, key=lambda sec: (len(sec["problems"]), sec["dimension"] in tagger.always))["problems"].append(n)
    for sec in sections:
        sec["problems"].sort()
    return sections


def section_text(number: int, heading: str, body: str) -> str:
    return f"（{CN_NUMBERS[number - 1]}）{heading}。{body}"


class _Run:
    """One draft run: the model, the record, events and statistics."""

    def __init__(self, config: Config, chat, record: Record, on_event, cancel):
        self.config, self.chat, self.record = config, chat, record
        self.emit = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.steps: dict[str, float] = {}
        self.embedder = None  # None: the configured embedder
        self.note = ""  # the note as the model saw it (instruction-like lines dropped)
        self.tagger = DimensionTagger()

    def timed(self, step: str, seconds: float) -> None:
        self.steps[step] = round(self.steps.get(step, 0.0) + seconds, 3)

    def call(self, step: str, messages: list[dict], **kwargs):
        completion = self.chat.complete(messages, cancel=self.cancel, **kwargs)  # a cancel cuts the call short
        self.record.add_call(step, completion)
        return completion

    def ask_json(self, step: str, messages: list[dict], validate: Callable[[dict], object], max_tokens: int):
        """Call the model for JSON, validate, and retry with the error fed back."""
        error, text = "", ""
        for _ in range(JSON_TRIES):
            text = self.call(step, messages, json_mode=True, max_tokens=max_tokens).text
            try:
                return validate(parse_json(text))
            except ValueError as exc:
                error = str(exc)
                self.emit({"type": "step", "step": step, "message": f"模型输出不合格（{error}），重试"})
                messages = messages + [{"role": "assistant", "content": text},
                                       {"role": "user", "content": f"上面的输出不符合要求：{error}。请只输出修正后的完整 JSON。"}]
        raise ModelError(f"模型连续 {JSON_TRIES} 次没有给出合格的结果（步骤 {step}）：{error}。最后一次输出：{text[:300]}",
                         exit_code=2)


def draft(note_text: str, config: Config, *, chat=None, on_event: Callable[[dict], None] | None = None,
          cancel: threading.Event | None = None, run_id: str | None = None, resume: str | None = None,
          target_chars: int = 1500, embedder=None) -> DraftResult:
    """Write a 原因剖析 draft for a situation note. `resume` continues a recorded run without redoing
    finished steps; `cancel` stops after the current call, keeping finished sections; `embedder` overrides
    the configured one (tests)."""
    from .llm import make_chat
    from .prompts import prompt_names

    note_text = (note_text or "").strip()
    if len(note_text) < MIN_NOTE_CHARS:
        raise InputError(f"情况说明太短（{len(note_text)} 字）：请写明单位、会议和查摆出的主要问题，至少 {MIN_NOTE_CHARS} 字。")
    if len(note_text) > MAX_NOTE_CHARS:
        raise InputError(f"情况说明太长（{len(note_text)} 字，上限 {MAX_NOTE_CHARS} 字）：请只保留单位概况和查摆出的问题。")
    clean, dropped = sanitize_note(note_text)
    if resume:
        record = Record.open(config.runs_dir, resume)
        if record.get("note") != note_text:
            raise InputError(f"运行记录「{resume}」对应的是另一份情况说明，不能续写。")
        record.update(status="running")
    else:
        versions = {name: load_prompt(name).version for name in prompt_names()}
        record = Record.create(config.runs_dir, run_id or new_run_id(), note=note_text, dropped_lines=dropped,
                               settings=config.redacted(), prompts=versions)
    own_chat = chat is None
    chat = chat or make_chat(config)
    run = _Run(config, chat, record, on_event, cancel)
    run.embedder, run.note = embedder, clean
    record.update(model=getattr(chat, "name", "unknown"))
    started = time.perf_counter()
    try:
        if dropped:
            run.emit({"type": "step", "step": "read_note", "message": f"已忽略说明中 {len(dropped)} 行像是指令的文字"})
        result = _draft(run, clean, target_chars)
    except BaseException as exc:  # Ctrl-C included: the record must say the run stopped
        message = str(exc) or "已中断"
        record.update(status="cancelled" if run.cancel.is_set() else "failed", error=message)
        run.emit({"type": "error", "message": message})
        raise
    finally:
        if own_chat and hasattr(chat, "close"):
            chat.close()
    calls = record["calls"]
    result.stats = {
        "calls": len(calls), "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
        "completion_tokens": sum(c["completion_tokens"] for c in calls),
        "seconds": round(time.perf_counter() - started, 2), "steps": run.steps,
    }
    result.warnings = [f"已忽略说明中像是指令的文字：{d}" for d in dropped]
    record.update(status=result.status, text=result.text, check=result.check, stats=result.stats)
    run.emit({"type": "done"})
    return result


def _draft(run: _Run, note: str, target_chars: int) -> DraftResult:
    from .copycheck import CopyIndex
    from .retrieve import Retriever
    from .store import Store

    config, record, emit = run.config, run.record, run.emit
    tagger = run.tagger

    t = time.perf_counter()
    if not record.get("note_struct"):
        emit({"type": "step", "step": "read_note", "message": "读取情况说明"})
        messages = load_prompt("read_note").render(note=note)
        info = run.ask_json("read_note", messages, validate_note, max_tokens=700)
        record.update(note_struct={**info, "problems": merge_problems(info["problems"], note)})
    info = record["note_struct"]
    run.timed("read_note", time.perf_counter() - t)

    if not record.get("plan"):
        plan = plan_sections(info["problems"], tagger)
        emit({"type": "step", "step": "plan", "message": f"{len(plan)} 条原因（{'、'.join(s['dimension'] for s in plan)}）"})
        record.update(plan=plan, sections=[None] * len(plan))
    plan, sections = record["plan"], record["sections"]

    t = time.perf_counter()
    emit({"type": "step", "step": "index", "message": "更新语料索引"})
    Store(config).sync(run.embedder)
    retriever = Retriever(config, embedder=run.embedder)
    copy_index = CopyIndex.load(config.corpus, config.cache / "copyindex")
    run.timed("index", time.perf_counter() - t)

    per_section = max(150, target_chars // len(plan))
    used: set[str] = set()
    for i, spec in enumerate(plan):
        if sections[i]:
            used.update(sections[i]["retrieved"])
            continue
        if run.cancel.is_set():
            return _finish(run, plan, sections, note, cancelled=True)
        done = [s for s in sections if s]
        sections[i] = _write_section(run, i, spec, info, retriever, copy_index, used, per_section,
                                     [s["heading"] for s in done], [s["text"] for s in done])
        record.update(sections=sections)

    emit({"type": "step", "step": "check", "message": "检查结构与抄袭"})
    return _finish(run, plan, sections, note)


def _write_section(run: _Run, i: int, spec: dict, info: dict, retriever, copy_index, used: set, chars: int,
                   others: list[str], earlier: list[str]) -> dict:
    from .tokens import count_messages, fit_to_budget

    emit, number = run.emit, i + 1
    # a section no problem chose (an `always` dimension) reasons about all of them, by title only
    problems = [info["problems"][n - 1] for n in spec["problems"]] or [{"title": p["title"], "facts": []} for p in info["problems"]]
    t = time.perf_counter()
    query = spec["dimension"].replace("/", "、") + "；" + "；".join(p["title"] for p in problems)
    hits = retriever.search(query, PATTERNS_PER_SECTION, dimension=spec["dimension"], exclude=used)
    if len(hits) < PATTERNS_PER_SECTION:
        hits += retriever.search(query, PATTERNS_PER_SECTION - len(hits), exclude=used | {h.id for h in hits})
    used.update(h.id for h in hits)
    run.timed("retrieve", time.perf_counter() - t)

    t = time.perf_counter()
    emit({"type": "section_start", "index": i, "heading": spec["dimension"]})
    max_tokens = int(chars * 0.8) + 40  # Qwen spends ~0.6 tokens a Chinese character; models overrun asked lengths
    prompt = load_prompt("draft_section")
    fixed = dict(unit=info["unit"], year=info["year"], meeting=info["meeting"], dimension=spec["dimension"],
                 problems=problems, min_chars=chars - 50, max_chars=chars + 50)
    budget = run.config.context_window - max_tokens - count_messages(prompt.render(**fixed, patterns=[]))
    patterns = fit_to_budget([_pattern(h) for h in hits], max(0, budget - 64))
    completion = run.call("section", prompt.render(**fixed, patterns=patterns), max_tokens=max_tokens,
                          on_token=lambda piece: emit({"type": "token", "index": i, "text": piece}))
    heading, body = split_section(completion.text, spec["dimension"])
    body = clean_body(body, info["unit"], completion.finish_reason == "length")
    heading, body = choose_heading(heading, body, spec["dimension"], others, run.tagger)
    body, invented = drop_invented(body, run.note)
    body = drop_repeated(body, earlier)
    run.timed("section", time.perf_counter() - t)

    t = time.perf_counter()
    facts = "；".join(f for p in problems for f in p["facts"]) or "无"
    rewritten, section = 0, f"{heading}。{body}"  # the heading sentence is checked for copying too
    for _ in range(REWRITE_ROUNDS):
        flags = copy_index.check(section)
        if not flags or run.cancel.is_set():
            break
        emit({"type": "step", "step": "rewrite", "message": f"第{number}条有 {len(flags)} 句与范文雷同，改写中"})
        for flag in sorted(flags, key=lambda f: -f.start):
            messages = load_prompt("rewrite").render(unit=info["unit"], facts=facts, sentence=flag.sentence)
            new = clean_body(run.call("rewrite", messages, max_tokens=200).text, info["unit"], False)
            section = section[: flag.start] + new + section[flag.end :]
            rewritten += 1
        section = clean_body(section, info["unit"], False)
    section, removed = drop_flagged(section, copy_index)  # what rewriting could not fix goes
    if rewritten or removed:
        heading, body = split_section(section)
    run.timed("rewrite", time.perf_counter() - t)

    text = section_text(number, heading, body)
    emit({"type": "section_done", "index": i, "text": text})
    return {"number": number, "heading": heading, "dimension": spec["dimension"], "problems": spec["problems"],
            "retrieved": [h.id for h in hits], "text": text, "rewritten": rewritten, "dropped": invented + removed}


def _pattern(hit) -> str:
    """A corpus item as an angle: its heading only. Bodies are never shown, so there is nothing to copy
    (key-term lists were tried: the small model strung them into its text)."""
    return hit.heading


def _finish(run: _Run, plan: list, sections: list, note: str, cancelled: bool = False) -> DraftResult:
    from .check import check_text

    t = time.perf_counter()
    done = [s for s in sections if s]
    if done and not cancelled:
        add_missing_problems(done, note)
    text = "\n".join(s["text"] for s in done)
    check = check_text(text, corpus_dir=run.config.corpus, note_text=note, cache_dir=run.config.cache).to_dict() if text else {}
    run.timed("check", time.perf_counter() - t)
    emit_status = "cancelled" if cancelled else "done"
    return DraftResult(text, done, check, bool(check.get("passed")) and not cancelled, run.record.path, {},
                       emit_status, run.record["run_id"])
