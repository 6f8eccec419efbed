"""The drafting chain: note -> plan -> one constrained call per link -> audit-driven repair -> checked draft.

The small model does one constrained thing per call. Each link (one per assigned problem, one call each)
opens with words the grammar fixes: the note's problem, a connective such as 根子在于 and the unit itself.
Then the model chooses the thinking behind it (思想根源) among its dimension's roots (corpus/dimensions.yaml),
and may go on with one clause of its own; the section's heading is the roots chosen. Everything else is
deterministic: the note is read by pipeline/note/ (the model is asked only when a note is free prose), the plan
ties problems to cause dimensions (plan.py), each clause goes through the genre audit and the copy check and a
failing one is written again, then cut (links.py, loop.py), moves add the genre's analysis sentences (moves.py,
off by default), and poxi assembles the paragraph (assembly.py). This module runs those steps in order.

The note reaches prompts only as the parser's problem strings, so instructions hidden in it have nowhere to
go. Progress goes to `on_event`; the run record (every call, every regeneration) makes a run resumable.
Left out: choosing the model (model/client.py), the checks (checks/), file output (console.py).
"""

import threading
import time
import zlib
from typing import Callable

from pipeline.config import Config
from pipeline.corpus.samples import DimensionTagger, load_corpus
from pipeline.drafting.assembly import DraftResult, finish, section_heading, section_text
from pipeline.drafting.fixes import assemble
from pipeline.drafting.links import link_openings, link_prefix, link_text, write_links
from pipeline.drafting.moves import MOVES_PER_SECTION, load_frames, pick_frames, sources, write_moves
from pipeline.drafting.plan import general_titles, plan_sections, read_problems, section_roots
from pipeline.errors import InputError
from pipeline.note.reader import parse_note
from pipeline.prompts import load_prompt
from pipeline.record import Record, new_run_id

__all__ = ["DraftResult", "draft"]

MIN_NOTE_CHARS, MAX_NOTE_CHARS = 20, 6000


class _Run:
    """One draft run: the model, the record, events and statistics."""

    def __init__(self, config: Config, chat, record: Record, on_event, cancel):
        self.config, self.chat, self.record = config, chat, record
        self.emit = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.steps: dict[str, float] = {}
        self.embedder = None  # None: the configured embedder
        self.note = ""  # the note as parsed (instruction-like clauses removed)
        self.angles = "none"
        self.items = []  # the corpus's items, loaded once when the draft takes moves
        self.frames = []  # the corpus's argument frames (moves.load_frames)
        self.tagger = DimensionTagger()

    def timed(self, step: str, seconds: float) -> None:
        self.steps[step] = round(self.steps.get(step, 0.0) + seconds, 3)

    def call(self, step: str, messages: list[dict], **kwargs):
        completion = self.chat.complete(messages, cancel=self.cancel, **kwargs)  # a cancel cuts the call short
        self.record.add_call(step, completion)
        return completion


def draft(note_text: str, config: Config, *, chat=None, on_event: Callable[[dict], None] | None = None,
          cancel: threading.Event | None = None, run_id: str | None = None, resume: str | None = None,
          embedder=None, angles: str | None = None) -> DraftResult:
    """Write a 原因剖析 draft for a situation note. `resume` continues a recorded run without redoing
    finished sections; `cancel` stops after the current call, keeping finished sections; `embedder`
    overrides the configured one (tests); `angles` is where a section's moves come from: the frames of the
    corpus items "retrieved" for its problems, of "random" items, or "none" (no moves: the ablation in
    evals/bench_draft.py); None: the configured `moves`."""
    from pipeline.model.client import constraint_of, make_chat

    note_text = (note_text or "").strip()
    if len(note_text) < MIN_NOTE_CHARS:
        raise InputError(f"情况说明太短（{len(note_text)} 字）：请写明单位、会议和查摆出的主要问题，至少 {MIN_NOTE_CHARS} 字。")
    if len(note_text) > MAX_NOTE_CHARS:
        raise InputError(f"情况说明太长（{len(note_text)} 字，上限 {MAX_NOTE_CHARS} 字）：请只保留单位概况和查摆出的问题。")
    note = parse_note(note_text)
    record = _open_record(config, note_text, note.dropped, resume, run_id)
    own_chat = chat is None
    chat = chat or make_chat(config)
    run = _Run(config, chat, record, on_event, cancel)
    run.embedder, run.note, run.angles = embedder, note.text, angles or config.moves
    record.update(model=getattr(chat, "name", "unknown"), constraint=constraint_of(chat))
    started = time.perf_counter()
    try:
        if note.dropped:
            run.emit({"type": "step", "step": "read_note", "message": f"已忽略说明中 {len(note.dropped)} 处像是指令的文字"})
        result = _draft(run, note)
    except BaseException as exc:  # Ctrl-C included: the record must say the run stopped
        message = str(exc) or "已中断"
        record.update(status="cancelled" if run.cancel.is_set() else "failed", error=message)
        run.emit({"type": "error", "message": message})
        raise
    finally:
        if own_chat and hasattr(chat, "close"):
            chat.close()
    result.stats = _stats(run, result.sections, started)
    result.warnings = [f"已忽略说明中像是指令的文字：{d}" for d in note.dropped]
    record.update(status=result.status, text=result.text, check=result.check, stats=result.stats)
    run.emit({"type": "done"})
    return result


def _open_record(config: Config, note_text: str, dropped: list[str], resume: str | None, run_id: str | None) -> Record:
    """The run's record: `resume`'s, which must be of the same note, or a new one."""
    from pipeline.prompts import prompt_names

    if resume:
        record = Record.open(config.runs_dir, resume)
        if record.get("note") != note_text:
            raise InputError(f"运行记录「{resume}」对应的是另一份情况说明，不能续写。")
        record.update(status="running")
        return record
    versions = {name: load_prompt(name, config.prompts_dir).version for name in prompt_names(config.prompts_dir)}
    return Record.create(config.runs_dir, run_id or new_run_id(), note=note_text, dropped_lines=dropped,
                         settings=config.redacted(), prompts=versions)


def _stats(run: _Run, sections: list[dict], started: float) -> dict:
    """The run's calls, tokens, time per step, and how its links and moves were first written and repaired."""
    calls = run.record["calls"]
    return {
        "calls": len(calls), "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
        "completion_tokens": sum(c["completion_tokens"] for c in calls),
        "seconds": round(time.perf_counter() - started, 2), "steps": run.steps,
        "regenerated": sum(1 for s in sections for a in s.get("attempts", []) + [a for m in s.get("moves", [])
                                                                              for a in m["attempts"]] if a["attempt"]),
        "replaced": sum(len(s.get("replaced", [])) for s in sections),
        # as the model first wrote them (before any regeneration or cut): the audit-clean target's figures
        "links": sum(len(s.get("roots", [])) for s in sections),
        "first_failed_links": sum(len(s.get("first_failures") or {}) for s in sections),
        "first_failed_sections": sum(1 for s in sections if s.get("first_failures")),
        "moves": sum(len(s.get("moves", [])) for s in sections),
        "moves_kept": sum(1 for s in sections for m in s.get("moves", []) if m["text"]),
        "first_failed_moves": sum(1 for s in sections for m in s.get("moves", []) if m["first_failures"]),
    }


def _draft(run: _Run, note) -> DraftResult:
    """Read the note, plan, open the index and checks, then write each section not yet in the record."""
    from pipeline.checks.audit import Auditor
    from pipeline.checks.copycheck import CopyIndex
    from pipeline.corpus.retrieve import Retriever
    from pipeline.corpus.store import Store

    config, record, emit = run.config, run.record, run.emit
    t = time.perf_counter()
    if not record.get("note_struct"):
        emit({"type": "step", "step": "read_note", "message": "读取情况说明"})
        problems = read_problems(run, note)
        if not problems:
            raise InputError("情况说明里没有找到查摆出的问题：请分条写出问题（如“1. 理论学习流于形式……”）。"
                             + ("说明中像是给模型下指令的文字已被忽略。" if note.dropped else ""))
        record.update(note_struct={**note.to_dict(), "problems": problems})
    info = record["note_struct"]
    run.timed("read_note", time.perf_counter() - t)

    if not record.get("plan"):
        plan = plan_sections(info["problems"], run.tagger)
        emit({"type": "step", "step": "plan", "message": f"{len(plan)} 条原因（{'、'.join(s['dimension'] for s in plan)}）"})
        record.update(plan=plan, sections=[None] * len(plan))
    plan, sections = record["plan"], record["sections"]

    t = time.perf_counter()
    retriever = None
    if run.angles == "retrieved":  # a run that retrieves nothing needs no index
        emit({"type": "step", "step": "index", "message": "更新语料索引"})
        Store(config).sync(run.embedder)
        retriever = Retriever(config, embedder=run.embedder)
    if run.angles != "none":
        run.items = load_corpus(config.corpus).items
        run.frames = load_frames(run.items)
    copy_index = CopyIndex.load(config.corpus, config.cache / "copyindex")
    auditor = Auditor(config.corpus, note=note)
    run.timed("index", time.perf_counter() - t)

    used: set[str] = set()  # frames the draft's moves have taken
    for i, spec in enumerate(plan):
        if sections[i]:
            used.update(m["frame"] for m in sections[i].get("moves", []))
            continue
        if run.cancel.is_set():
            return finish(run, sections, note, copy_index, cancelled=True)
        earlier = [s["text"] for s in sections if s]
        sections[i] = _write_section(run, i, spec, info, retriever, copy_index, auditor, used, earlier)
        record.update(sections=sections)

    emit({"type": "step", "step": "check", "message": "检查结构、文风与抄袭"})
    return finish(run, sections, note, copy_index)


def _write_section(run: _Run, i: int, spec: dict, info: dict, retriever, copy_index, auditor, used: set,
                   earlier: list[str]) -> dict:
    """Section i: its sources, its links written and checked, its moves, its text; the record's section."""
    emit, number = run.emit, i + 1
    own = [info["problems"][n - 1] for n in spec["problems"]]
    # a section no problem chose (an `always` dimension) links its thinking to the note's problems at large
    problems = own or info["problems"]
    t = time.perf_counter()
    hits = sources(run, retriever, spec, problems)
    run.timed("retrieve", time.perf_counter() - t)

    emit({"type": "section_start", "index": i, "heading": spec["dimension"]})
    t = time.perf_counter()
    titles = []  # a general section's problem titles
    if own:
        prefixes = [link_prefix(p["text"]) for p in own]
    else:  # a general section: the titles of the problems closest to its dimension, those an earlier one named last
        taken = {t for s in run.record["sections"] if s for t in s.get("titles", [])}
        titles, words = general_titles(problems, spec["dimension"], taken, run.tagger)
        prefixes = [link_prefix(words, 60)]
    openings = link_openings(prefixes, number, info["subject"])
    pool = run.tagger.roots.get(spec["dimension"]) or [r for rs in run.tagger.roots.values() for r in rs]
    roots = section_roots(pool, len(openings), turn=zlib.crc32(run.note.encode("utf-8")), texts=prefixes, tagger=run.tagger)
    said = [t for s in run.record["sections"] if s for t in s.get("tails", []) if t]  # earlier sections' tails
    written = write_links(run, number, openings, roots, info, spec["dimension"], earlier, said, auditor, copy_index)
    final = written.links
    heading, body = section_heading(final), assemble([link_text(o, link) for o, link in zip(openings, final)])
    run.timed("section", time.perf_counter() - t)
    t = time.perf_counter()
    frames = pick_frames(run.frames, [h.id for h in hits], used, len(run.frames))
    tails = [link["tail"] for link in final if link["tail"]]
    moves = write_moves(run, number, frames, problems, [link["root"] for link in final], heading, body, info,
                        auditor, copy_index, earlier, said + tails, MOVES_PER_SECTION)
    used.update(m["frame"] for m in moves)
    run.timed("moves", time.perf_counter() - t)
    text = section_text(number, heading, assemble([m["text"] for m in moves]) + body)
    emit({"type": "section_done", "index": i, "text": text})
    return {"number": number, "heading": heading, "dimension": spec["dimension"], "problems": spec["problems"],
            "titles": titles, "retrieved": [h.id for h in hits], "text": text, "attempts": written.attempts,
            "roots": [link["root"] for link in final], "tails": [link["tail"] for link in final], "moves": moves,
            "cut": written.cut, "replaced": written.replaced, "first_failures": written.first_failures}
