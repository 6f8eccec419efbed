"""The drafting chain: note -> plan -> one constrained call per link -> audit-driven repair -> checked draft.

The small model does one constrained thing per call. Each link (one per assigned problem, one call each)
opens with words the grammar fixes: the note's problem, a connective such as 根子在于 and the unit itself.
Then the model chooses the thinking behind it (思想根源) among its dimension's roots (corpus/dimensions.yaml),
and may go on with one clause of its own, the mindset at work (对……认识不足/认为只要……/满足于…); the
section's heading is the roots chosen. Free fields for the root, the heading and the harm were tried and
dropped: the 1.5B model retold the problems there, named no thinking, restated problems as headings and
invented consequences. Everything else is deterministic: the note is read by pipeline/note.py (the model is
asked only when a note is free prose, and its answer is kept only where it quotes the note), the plan ties
problems to cause dimensions, poxi assembles the paragraph, and each clause goes through the genre audit and
the copy check. A failing clause is written again with another seed (EXTRA_CALLS more calls per link, at most
SECTION_EXTRA_CALLS per section), then cut; the root stays. Each call is asked to avoid the words of the
clauses the draft already has, and a retry those of the clause that failed (`avoid`: a logit bias where the
endpoint is the embedded server).

The note reaches prompts only as the parser's problem strings, so instructions hidden in it have nowhere to
go. Progress goes to `on_event`; the run record (every call, every regeneration) makes a run resumable.
Left out: choosing the model (llm.make_chat), the checks (check.py, audit.py), file output (console.py).
"""

import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipeline.config import Config
from pipeline.corpus.samples import DimensionTagger, load_corpus
from pipeline.errors import InputError, ModelError
from pipeline.drafting.fixes import assemble, clean_field
from pipeline.drafting.moves import MOVES_PER_SECTION, load_frames, pick_frames, write_moves
from pipeline.note.reader import FRAMING, parse_note
from pipeline.prompts import load_prompt
from pipeline.record import Record, new_run_id

MIN_NOTE_CHARS, MAX_NOTE_CHARS = 20, 6000
CN_NUMBERS = "一二三四五六七八九十"
EXTRA_CALLS = 1  # regenerations of a link whose clause fails the audit or the copy check
SECTION_EXTRA_CALLS = 2  # and of a section's links in all
RETRY_TEMPERATURE = 0.7  # a regeneration at temperature 0 would repeat the first reply whatever the seed
# corpus items retrieved for a section's problems, closest first: the frames they hold are its moves, in that
# order. Few items hold a frame (5 frames in 18 of the 45 seed items), so at 8 half the sections of a draft got none.
SOURCES_PER_SECTION = 24
# One call per link, not one per section. Written in one reply, a section's links often said the same clause
# twice ("对基层反馈重视不够" for two problems) or the first link's clause retold the next problem, which the
# model saw in the same prompt. Asked one link at a time (its own problem only, the words of the section's
# earlier clauses avoided), on the 8 cases with the most failures sections clean as first written went from
# 78% to 94% and links from 82% to 96%, for 8% more time (and a shorter prompt: see prompts/section.yaml).
PER_LINK = True


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


# The section contract's character classes: no quotes or backslashes (they would break the JSON a
# grammar produces), no digits (figures come only with the note's own words), no Latin letters (English
# words slipped into the Chinese: "reputation", "quality"), one clause (no full stops, colons or commas: a
# small model that may go on writes residue, prompt echoes and remedies; nor the fullwidth ．: "……薄弱．警惕不严";
# no ellipses: it copied the prompt's).
WORD = r'[^"\\\n0-9０-９a-zA-Z，。；：、,.;:！？!?（）()“”‘’「」『』{}\[\]【】…⋯．]'
OPEN_ENDS = tuple("和与及的在对把被将使并且或而从向为")  # a clause that ends on one of these was cut off
# what a link says after the problem's words: its cause. Rotated so a section's links do not all read alike.
CONNECTORS = ("根子在于", "说到底是", "反映出")
# how a link may go on after the thinking it names: the unit's attitude to the work (对……重视不够), the
# mindset at work (认为只要……就……) or a habit (满足于……, 习惯于……). Left free, the model wrote consequences
# ("导致……"), remedies and inventions there. Opened with 把, it retold the problem ("把主题党日活动形式单一") or
# praised the unit ("把学生利益放在第一位"). Opened with a bare 认为/觉得, it shifted the blame ("认为政府应该出台
# 更多政策……"), praised ("认为社区是为人民服务的") or ran past its bound; bound to 认为只要, the same replies
# became conditions ("认为只要把文件发出去就行了"): on the 8 cases with the most failures, sections clean as
# first written went from 69% to 81% and clauses kept from 34 to 39 of 49 (no bare 认为 at all: 75%, 37).
# Tried and dropped: no 对 (excuses and remedies after 认为: "认为工作压力大", "认为要强化责任担当"); 对 bound to
# an attitude verb and a negation (……重视不够): 75%, and garbled ends ("对干部的监督和管理存在漏洞了解不够").
TAIL_STARTS = ("对", "认为只要", "满足于", "习惯于")
# 认为只要 states a condition, and its clause must go on to what the unit took to follow (……就行了): left
# open, the model stopped at the condition ("认为只要学校能保证教学质量"), a clause the writer has to finish
CONDITION, THEN = "认为只要", "就"
# ... but after gifts, hospitality or public money taken it reads as the unit excusing it ("……收受医药代表宴请……，
# 认为只要收礼就行", "……中秋收了企业月饼……，认为只要收到月饼就行": both passed every gate), so such a link's
# clause may not open so. Other breaches keep it: "……违规发放补贴……，认为只要按程序审核就行" is a cause.
BREACH = re.compile("收受|收了|收礼|宴请|吃请|月饼|礼品|礼金|红包|购物卡|公款|公车|用车|超标|安排食宿")
# what the model writes after a tail's opening: at 20, 4 of the 20 cases' first-written failures were clauses
# stopped at the bound ("对学院的未来规划和目标定位缺乏深入思考和魄"); at 24 those 4 cases were clean
TAIL_CHARS = (3, 24)
# A clause names the thinking at work, not what the problem led to: "……，对研究生培养和科研工作造成了一定的影响",
# "……，对学院的发展产生了负面影响" (4 of 120 links in the 20 cases passed every gate so). Its words are avoided in
# every call (a logit bias, where the endpoint takes one), and a clause that still holds one fails; 不影响 is a
# mindset's words ("认为只要不影响工作就行"), not an effect.
EFFECT_WORDS = ("造成", "导致", "致使", "后果", "负面", "影响")
# the check also refuses what a rewrite reached for instead ("……造成了严重威胁" written again as
# "对研究生的安全和健康构成了重大风险"); the nudge keeps to the words above
EFFECT = re.compile("|".join(EFFECT_WORDS + ("构成", "威胁")).replace("影响", "(?<!不)影响"))
TAIL_ECHO = 7  # a tail sharing this many characters with an earlier tail of the draft, or a root, says it again


def link_openings(prefixes: list[str], number: int, subject: str = "班子") -> list[str]:
    """The words each link of section `number` must start with: the note's problem, a connective and the
    unit itself, so the cause is the unit's own (left free, the model blamed 企业, 学校 or 业务部门)."""
    return [f"{p}，{CONNECTORS[(number + k - 1) % len(CONNECTORS)]}{subject}" for k, p in enumerate(prefixes)]


def link_prefix(problem: str, most: int = 60) -> str:
    """The note's words each link must start with: the problem's text without a leading connective, cut at a
    clause end past `most`."""
    text = re.sub(r'"([^"]*)"', r"“\1”", problem.replace("\n", "")).replace('"', "”")  # "双减" -> “双减”
    text = text.replace("\\", "").replace("^", "")
    text = text.replace("[", "【").replace("]", "】").rstrip("。；;，, ")  # brackets and carets: see _literal
    text = re.sub(r"^(但是|但|同时|另外|此外|还有|而且|并且)[，,]?", "", text)
    text = FRAMING.sub("", text)  # the note's framing is not the problem: "大家觉得主要是调查研究不够"
    if len(text) <= most:
        return text
    cut = max(text.rfind(ch, 0, most) for ch in "，,；;。")
    return text[:cut] if cut >= 8 else text[:most]


def _literal(text: str) -> str:
    """A pattern that matches `text` only, written so llama.cpp reads it: llama-cpp-python 0.3.36's server
    crashed on a backslash escape (the "\\." of "2.5趟"), so a metacharacter goes in a one-character class.
    Example: _literal("跑2.5趟") == "跑2[.]5趟". ("[", "]" and "^" never reach it: see link_prefix.)"""
    return "".join(f"[{ch}]" if ch in ".*+?()|{}$" else ch for ch in text)


def section_roots(pool: list[str], links: int, turn: int = 0, most: int = 4, texts: list[str] | None = None,
                  tagger: DimensionTagger | None = None) -> list[list[str]]:
    """The thinking each of a section's `links` links may name: `pool`, turned by `turn`, dealt out in turn
    so no two links of a section name the same one, at most `most` each. Left to choose from a whole pool,
    the model named the same favourite for every unit. Given each link's problem (`texts`), a link is offered
    instead the roots of `pool` that fit its problem best (pipeline/roots.py, with `tagger`'s roots and cues),
    still none to two links, at most roots.OFFERED: dealt blind, 13 of 46 links named a thinking that did not fit
    (科研诚信管理不严 → 对群众的急难愁盼重视不够). Example:
    section_roots(["a", "b", "c"], 2) == [["a", "c"], ["b"]]; section_roots(["a", "b", "c"], 1, 1, 2) == [["b", "c"]]"""
    if texts:
        from pipeline.drafting.roots import OFFERED, RootRanker, deal_roots

        ranker = RootRanker(tagger or DimensionTagger())
        return deal_roots([ranker.rank(text, pool=pool, turn=turn) for text in texts], min(most, OFFERED))
    turned = pool[turn % len(pool) :] + pool[: turn % len(pool)]
    return [(turned[k::links] or turned)[:most] for k in range(links)]


def section_schema(openings: list[str], roots: list[list[str]]) -> dict:
    """The section step's contract, one grammar for the endpoint and the validator here: one link per
    problem, which opens with its `openings` (link_openings), names one of its `roots` and may go on with one
    clause that opens with a TAIL_STARTS word (a CONDITION goes on to THEN). The model's choice is the root
    and its words the tail."""
    lo, hi = TAIL_CHARS
    free = "|".join(s for s in TAIL_STARTS if s != CONDITION)
    # a comma may close the clause, and then the string: forbidden it, the model ran its next clause on
    # without one until the bound cut it mid-word; allowed more, it went on to consequences (导致……). A
    # condition (no 就 of its own: "认为只要完成工作就可以满足自己的需求就忽视了对理论学习") and what follows
    # 就 (at most 10, not 就 again: "认为只要车辆就就行") stay under the bound together.
    condition = WORD.replace("[^", f"[^{THEN}", 1)
    mindset = f"|{CONDITION}{condition}{{2,{hi - 12}}}{THEN}{condition}{WORD}{{0,9}}"

    def link(opening: str, roots: list[str]) -> dict:
        root = "|".join(map(_literal, roots))
        tail = f"(，(({free}){WORD}{{{lo},{hi}}}{'' if BREACH.search(opening) else mindset})，?)?"
        longest = len(opening) + max(map(len, roots)) + 2 + max(map(len, TAIL_STARTS)) + hi
        return {"type": "string", "pattern": f"^({_literal(opening)})({root}){tail}$", "maxLength": longest}

    items = [link(o, r) for o, r in zip(openings, roots)]
    return {"type": "object", "additionalProperties": False, "required": ["联系"],
            "properties": {"联系": {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}}}


def validate_section(data: dict, schema: dict) -> list[dict | None]:
    """Each link of a reply as {"root", "tail", "cut"} when it opens with its opening and one of its roots,
    else None (and so written again). Whatever follows the root and breaks the contract (an endpoint
    without grammar support writes freely; a clause stopped at its bound or mid-phrase) is dropped, and
    "cut" holds it ("" when nothing was). Raises ValueError when no link came back usable."""
    specs = schema["properties"]["联系"]["prefixItems"]
    raw = data.get("联系") if isinstance(data.get("联系"), list) else []
    out = []
    for k, spec in enumerate(specs):
        value = raw[k].strip().rstrip("。") if k < len(raw) and isinstance(raw[k], str) else ""
        pattern = spec["pattern"][1:-1]
        whole = re.fullmatch(pattern, value)
        match = whole or re.match(pattern[: pattern.rindex("(，(")], value)  # the opening and the root alone
        if not match:
            out.append(None)
            continue
        tail = value[match.end(2) + 1 :].rstrip("，") if whole else ""
        start = next((s for s in TAIL_STARTS if tail.startswith(s)), "")
        own = tail[len(start) :]  # the model's words after the tail's opening
        if tail and (len(own) >= TAIL_CHARS[1] or tail[-1] in OPEN_ENDS):
            tail = ""
        out.append({"root": match.group(2), "tail": clean_field(tail), "cut": "" if tail else value[match.end(2) :]})
    if not any(out):
        raise ValueError("回复不符合约定的格式")
    return out


def link_text(opening: str, link: dict) -> str:
    return f"{opening}{link['root']}" + (f"，{link['tail']}" if link["tail"] else "")


def section_heading(links: list[dict], most: int = 24) -> str:
    """The section's judgement: the thinking its links named, two when they differ and fit in `most`."""
    roots = list(dict.fromkeys(link["root"] for link in links))
    if len(roots) > 1 and len(roots[0]) + len(roots[1]) < most:
        return f"{roots[0]}，{roots[1]}"
    return roots[0]


def plan_sections(problems: list[dict], tagger: DimensionTagger, lo: int = 4, hi: int = 6) -> list[dict]:
    """Assign the note's problems to cause dimensions, deterministically: the tagger's `always` dimensions,
    then each problem's best dimension (that of the root that fits it best: pipeline/roots.py), capped at
    `hi`. Each problem goes to its best chosen section; one nothing matches goes to the section with the fewest
    problems. A problem that shares a section moves to an `always` section none chose, or (while there are
    fewer than `lo` sections) to its next best dimension, where that fits it nearly as well (roots.MOVE_FIT);
    then the note's next strongest dimensions are added as general sections, which link their thinking to
    the problems at large.

    Example: 4 problems about study, the masses, style and discipline -> 4–5 sections, one per dimension.
    """
    from pipeline.drafting.roots import MOVE_FIT, RootRanker

    ranker = RootRanker(tagger)
    scores = [ranker.dimension_scores(p["title"], p.get("text") or "；".join(p["facts"])) for p in problems]
    ranked = [[d for d in sorted(tagger.names, key=lambda d: (-s[d], tagger.names.index(d))) if s[d]] for s in scores]
    chosen = list(dict.fromkeys(tagger.always + [r[0] for r in ranked if r]))
    total = {d: sum(s[d] for s in scores) for d in tagger.names}
    while len(chosen) > hi:  # drop the dimension the fewest problems chose, never an `always` one
        firsts = [r[0] for r in ranked if r]
        chosen.remove(min((d for d in chosen if d not in tagger.always), key=lambda d: (firsts.count(d), total[d])))
    home = {}  # problem number -> dimension
    for n, r in enumerate(ranked, 1):
        if r:
            home[n] = max(chosen, key=lambda d: scores[n - 1][d])
    for n in (n for n, r in enumerate(ranked, 1) if not r):  # no keyword at all: to the emptiest section
        home[n] = min(chosen, key=lambda d: (list(home.values()).count(d), d in tagger.always))
    def fit(n: int, d: str) -> float:  # how well dimension d fits problem n beside its own section
        return scores[n - 1][d] / (scores[n - 1][home[n]] or 1)

    for d in (d for d in tagger.always if d not in home.values()):  # a study problem fills the study section
        movable = [n for n in home if list(home.values()).count(home[n]) > 1 and fit(n, d) >= MOVE_FIT]
        if movable:
            home[max(movable, key=lambda n: fit(n, d))] = d
    moved = True
    while len(chosen) < lo and moved:
        moved = False
        for n, r in enumerate(ranked, 1):
            shared = list(home.values()).count(home[n]) > 1
            spare = next((d for d in r if d not in chosen and fit(n, d) >= MOVE_FIT), None)
            if shared and spare:
                chosen.append(spare)
                home[n], moved = spare, True
                break
    for d in sorted(tagger.names, key=lambda d: (-total[d], tagger.names.index(d))):
        if len(chosen) >= min(lo, len(problems) + 1):
            break  # a draft of one or two problems gets one general section, not a padded outline
        if d not in chosen:
            chosen.append(d)  # a general section: it reasons about the note's problems at large
    chosen.sort(key=tagger.names.index)
    return [{"dimension": d, "problems": sorted(n for n, h in home.items() if h == d)} for d in chosen]


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
        self.note = ""  # the note as parsed (instruction-like clauses removed)
        self.angles = "none"
        self.frames = []  # the corpus's argument frames (moves.load_frames)
        self.tagger = DimensionTagger()

    def timed(self, step: str, seconds: float) -> None:
        self.steps[step] = round(self.steps.get(step, 0.0) + seconds, 3)

    def call(self, step: str, messages: list[dict], **kwargs):
        completion = self.chat.complete(messages, cancel=self.cancel, **kwargs)  # a cancel cuts the call short
        self.record.add_call(step, completion)
        return completion


def read_problems(run: _Run, note) -> list[dict]:
    """The note's problems: the parser's, or (free prose only) the model's quotes of the note. A model
    failure falls back to no problems, never ends the run."""
    problems = [{"title": p.title, "facts": list(p.facts), "text": p.text} for p in note.problems]
    if problems or not note.text:
        return problems
    run.emit({"type": "step", "step": "read_note", "message": "说明没有分条，请模型摘出其中的问题"})
    schema = {"type": "object", "required": ["问题"], "additionalProperties": False,
              "properties": {"问题": {"type": "array", "items": {"type": "string", "minLength": 4, "maxLength": 200},
                                    "minItems": 1, "maxItems": 8}}}
    messages = load_prompt("read_note", run.config.prompts_dir).render(note=note.text)
    for attempt in range(2):
        try:
            reply = run.call("read_note", messages, schema=schema, max_tokens=600,
                             **({"seed": run.config.seed + attempt, "temperature": RETRY_TEMPERATURE} if attempt else {}))
            quotes = parse_json(reply.text).get("问题") or []
        except (ModelError, ValueError):
            continue
        kept = [q.strip("。；; ") for q in quotes if isinstance(q, str) and q.strip("。；; ") and q.strip("。；; ") in note.text]
        if kept:
            return [{"title": re.split(r"[，,。；;]", q)[0][:20], "facts": [q], "text": q} for q in kept]
    return []


def draft(note_text: str, config: Config, *, chat=None, on_event: Callable[[dict], None] | None = None,
          cancel: threading.Event | None = None, run_id: str | None = None, resume: str | None = None,
          embedder=None, angles: str | None = None) -> DraftResult:
    """Write a 原因剖析 draft for a situation note. `resume` continues a recorded run without redoing
    finished sections; `cancel` stops after the current call, keeping finished sections; `embedder`
    overrides the configured one (tests); `angles` is where a section's moves come from: the frames of the
    corpus items "retrieved" for its problems, of "random" items, or "none" (no moves: the ablation in
    evals/bench_draft.py); None: the configured `moves`."""
    from pipeline.model.client import constraint_of, make_chat
    from pipeline.prompts import prompt_names

    note_text = (note_text or "").strip()
    if len(note_text) < MIN_NOTE_CHARS:
        raise InputError(f"情况说明太短（{len(note_text)} 字）：请写明单位、会议和查摆出的主要问题，至少 {MIN_NOTE_CHARS} 字。")
    if len(note_text) > MAX_NOTE_CHARS:
        raise InputError(f"情况说明太长（{len(note_text)} 字，上限 {MAX_NOTE_CHARS} 字）：请只保留单位概况和查摆出的问题。")
    note = parse_note(note_text)
    if resume:
        record = Record.open(config.runs_dir, resume)
        if record.get("note") != note_text:
            raise InputError(f"运行记录「{resume}」对应的是另一份情况说明，不能续写。")
        record.update(status="running")
    else:
        versions = {name: load_prompt(name, config.prompts_dir).version for name in prompt_names(config.prompts_dir)}
        record = Record.create(config.runs_dir, run_id or new_run_id(), note=note_text, dropped_lines=note.dropped,
                               settings=config.redacted(), prompts=versions)
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
    calls = record["calls"]
    result.stats = {
        "calls": len(calls), "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
        "completion_tokens": sum(c["completion_tokens"] for c in calls),
        "seconds": round(time.perf_counter() - started, 2), "steps": run.steps,
        "regenerated": sum(1 for s in result.sections for a in s.get("attempts", []) + [a for m in s.get("moves", [])
                                                                                     for a in m["attempts"]] if a["attempt"]),
        "replaced": sum(len(s.get("replaced", [])) for s in result.sections),
        # as the model first wrote them (before any regeneration or cut): the audit-clean target's figures
        "links": sum(len(s.get("roots", [])) for s in result.sections),
        "first_failed_links": sum(len(s.get("first_failures") or {}) for s in result.sections),
        "first_failed_sections": sum(1 for s in result.sections if s.get("first_failures")),
        "moves": sum(len(s.get("moves", [])) for s in result.sections),
        "moves_kept": sum(1 for s in result.sections for m in s.get("moves", []) if m["text"]),
        "first_failed_moves": sum(1 for s in result.sections for m in s.get("moves", []) if m["first_failures"]),
    }
    result.warnings = [f"已忽略说明中像是指令的文字：{d}" for d in note.dropped]
    record.update(status=result.status, text=result.text, check=result.check, stats=result.stats)
    run.emit({"type": "done"})
    return result


def _draft(run: _Run, note) -> DraftResult:
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
    run.frames = [] if run.angles == "none" else load_frames(load_corpus(config.corpus).items)
    copy_index = CopyIndex.load(config.corpus, config.cache / "copyindex")
    auditor = Auditor(config.corpus, note.text)
    run.timed("index", time.perf_counter() - t)

    used: set[str] = set()  # frames the draft's moves have taken
    for i, spec in enumerate(plan):
        if sections[i]:
            used.update(m["frame"] for m in sections[i].get("moves", []))
            continue
        if run.cancel.is_set():
            return _finish(run, sections, note.text, cancelled=True)
        earlier = [s["text"] for s in sections if s]
        sections[i] = _write_section(run, i, spec, info, retriever, copy_index, auditor, used, earlier)
        record.update(sections=sections)

    emit({"type": "step", "step": "check", "message": "检查结构、文风与抄袭"})
    return _finish(run, sections, note.text)


def _sources(run: _Run, retriever, spec: dict, problems: list[dict]) -> list:
    """Corpus items closest to this section's problems, its dimension's first: their frames are the section's
    moves (their sentences are never shown: the model copied them). The ablation's "random" takes any items
    (seeded by the section), "none" none."""
    if run.angles == "none":
        return []
    if run.angles == "random":
        import random

        pool = load_corpus(run.config.corpus).items
        return random.Random(spec["dimension"] + run.note).sample(pool, min(SOURCES_PER_SECTION, len(pool)))
    query = "；".join(p["text"] for p in problems) or spec["dimension"].replace("/", "、")
    hits = retriever.search(query, SOURCES_PER_SECTION, dimension=spec["dimension"])
    if len(hits) < SOURCES_PER_SECTION:
        hits += retriever.search(query, SOURCES_PER_SECTION - len(hits), exclude={h.id for h in hits})
    return hits


def _write_section(run: _Run, i: int, spec: dict, info: dict, retriever, copy_index, auditor, used: set,
                   earlier: list[str]) -> dict:
    emit, number, config = run.emit, i + 1, run.config
    own = [info["problems"][n - 1] for n in spec["problems"]]
    # a section no problem chose (an `always` dimension) links its thinking to the note's problems at large
    problems = own or info["problems"]
    t = time.perf_counter()
    hits = _sources(run, retriever, spec, problems)
    run.timed("retrieve", time.perf_counter() - t)

    emit({"type": "section_start", "index": i, "heading": spec["dimension"]})
    t = time.perf_counter()
    titles = []  # a general section's problem titles
    if own:
        prefixes = [link_prefix(p["text"]) for p in own]
    else:  # a general section: the titles of the problems closest to its dimension, those an earlier one named last
        taken = {t for s in run.record["sections"] if s for t in s.get("titles", [])}
        closest = sorted(problems, key=lambda p: (p["title"] in taken,
                                                  -run.tagger.scores(p["title"], p["text"])[spec["dimension"]]))
        titles = [p["title"] for p in closest if len(p["title"]) <= 20]
        while len(titles) > 1 and len("、".join(titles)) > 40:
            titles.pop()  # whole titles only: a title cut in two reads as nonsense
        prefixes = [link_prefix("、".join(titles or [closest[0]["title"][:20]]), 60)]
    openings = link_openings(prefixes, number, info["subject"])
    pool = run.tagger.roots.get(spec["dimension"]) or [r for rs in run.tagger.roots.values() for r in rs]
    roots = section_roots(pool, len(openings), turn=zlib.crc32(run.note.encode("utf-8")), texts=prefixes, tagger=run.tagger)
    prompt = load_prompt("section", config.prompts_dir)

    def messages(listed: bool, group: list[int]) -> list[dict]:
        return prompt.render(unit=info["unit"] or "本单位", year=info["year"] or "本", meeting=info["meeting"] or "民主生活会",
                             subject=info["subject"], voice=info["voice"], dimension=spec["dimension"].replace("/", "和"),
                             problems=[openings[k] for k in group], roots=[roots[k] for k in group], listed=listed,
                             angles=[])
    said = [t for s in run.record["sections"] if s for t in s.get("tails", []) if t]  # earlier sections' tails
    best: dict[int, dict] = {}  # link number -> a link that passed, tail and all
    bare: dict[int, dict] = {}  # link number -> a link whose tail failed, without it
    attempts, first, constrained, failed = [], {}, True, []  # failed: tails that failed, for `avoid`
    keep = openings + [r for rs in roots for r in rs]
    named = [r for rs in run.tagger.roots.values() for r in rs]  # every thinking a link may name
    spent = 0  # the section's regenerations
    for group in ([[k] for k in range(len(openings))] if PER_LINK else [list(range(len(openings)))]):
        schema = section_schema([openings[k] for k in group], [roots[k] for k in group])
        for attempt in range(1 + EXTRA_CALLS):
            if attempt and (run.cancel.is_set() or spent == SECTION_EXTRA_CALLS):
                break
            spent += attempt > 0
            overrides = {"seed": config.seed + 1000 * number + 10 * group[0] + attempt,
                         "temperature": RETRY_TEMPERATURE} if attempt else {}
            # after a failed call, plain JSON mode (validated here): llama.cpp has crashed on one section's grammar
            # whatever the seed, so a request that failed is not sent under the same grammar again
            ask = {"schema": schema} if constrained else {"json_mode": True}
            written = [best[k]["tail"] for k in sorted(best) if best[k]["tail"]]  # this section's tails so far
            try:
                listed = not (constrained and getattr(run.chat, "enforces_schema", False))  # roots in the prompt
                reply = run.call("section", messages(listed, group), max_tokens=80 + 60 * len(group),
                                 avoid=_avoid(said + written + failed, keep, EFFECT_WORDS), **ask, **overrides)
                got = validate_section(parse_json(reply.text), schema)
            except (ModelError, ValueError) as exc:  # the next attempt changes the request (seed, temperature)
                if isinstance(exc, ModelError) and attempt == EXTRA_CALLS and not best and not bare:
                    raise
                constrained = constrained and not isinstance(exc, ModelError)
                attempts.append({"attempt": attempt, "links": group, "error": str(exc)})
                if not attempt:
                    first.update({f"联系{k}": ["format"] for k in group})
                continue
            links: list[dict | None] = [None] * len(openings)
            for k, link in zip(group, got):
                links[k] = link
            failures = _tail_failures(links, best, openings, earlier, said, named, run.note, auditor, copy_index)
            failed += [links[k]["tail"] for k in failures if links[k] and links[k]["tail"]]
            for k in group:
                if links[k] and k not in best:
                    if k in failures:
                        bare.setdefault(k, {**links[k], "tail": "", "cut": links[k]["cut"] or links[k]["tail"]})
                    else:
                        best[k] = links[k]
            if not attempt:  # how the model first wrote it: the figure the audit-clean target is about
                first.update({f"联系{k}": failures.get(k, ["format"]) for k in group if k in failures or not links[k]})
            attempts.append({"attempt": attempt, "links": group,
                             "rejected": {f"联系{k}": {"text": link_text(openings[k], links[k]), "reasons": r,
                                                      **({"dropped": links[k]["cut"]} if links[k]["cut"] else {})}
                                         for k, r in failures.items()}})
            needed = [k for k in group if k not in best]
            if not needed:
                break
            if attempt < EXTRA_CALLS and spent < SECTION_EXTRA_CALLS:
                reasons = "；".join(sorted({r for k in needed for r in failures.get(k, ["format"])}))
                emit({"type": "step", "step": "regenerate", "message": f"第{number}条有 {len(needed)} 处不合格（{reasons}），重写中"})
    # a link whose every tail failed keeps its root; one never written names the first root it was offered
    final = [best.get(k) or bare.get(k) or {"root": roots[k][0], "tail": "", "cut": ""} for k in range(len(openings))]
    replaced = [f"联系{k}" for k in range(len(openings)) if k not in best and k not in bare]
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
            "titles": titles, "retrieved": [h.id for h in hits], "text": text, "attempts": attempts,
            "roots": [link["root"] for link in final], "tails": [link["tail"] for link in final], "moves": moves,
            "cut": sorted(f"联系{k}" for k in bare if k not in best),
            "replaced": replaced, "first_failures": first}


def _tail_failures(links: list[dict | None], best: dict, openings: list[str], earlier: list[str], said: list[str],
                   named: list[str], note_text: str, auditor, copy_index) -> dict[int, list[str]]:
    """Link number -> reasons its tail fails: the audit and the copy check of the section as this reply
    would assemble it (links accepted from an earlier reply in place of this reply's). Only a tail is the
    model's own words, so only findings that reach into a tail count; a finding in the note's words or a
    root is the check's to report, and no call would change it. A tail that says again what a tail of an
    earlier section (`said`) or an earlier link of this one said fails too ("认为自己是领导" and
    "认为自己是领导者" in one section: 7 characters, under the audit's clause run), and so does one that
    names a thinking poxi lets links name (`named`, every root): a link that names it too, in this section
    or a later one, would repeat the tail in words no call can change ("……为民情怀不深，对群众的急难愁盼重视不够"
    and then "……根子在于班子对群众的急难愁盼重视不够")."""
    from pipeline.checks.structure import new_numbers

    chosen = [best.get(k) or link for k, link in enumerate(links)]
    present = [(k, link) for k, link in enumerate(chosen) if link]
    heading = section_heading([link for _, link in present])
    body, tails = "", {}  # link number -> (start, end) of its tail in "heading。body"
    for k, link in present:
        sentence = assemble([link_text(openings[k], link)])
        if link["tail"] and k not in best:
            end = len(heading) + 1 + len(body) + len(sentence) - 1
            tails[k] = (end - len(link["tail"]), end)
        body += sentence
    failures: dict[int, list[str]] = {}

    def blame(start: int, end: int, reason: str) -> None:
        for k, (a, b) in tails.items():
            if a < end and start < b:
                failures.setdefault(k, []).append(reason)

    for finding in auditor.section(heading, body, earlier):
        blame(finding.start, finding.end, finding.kind)
    for flag in copy_index.check(f"{heading}。{body}"):
        blame(flag.start, flag.end, "copied")
    for k in tails:
        if new_numbers(links[k]["tail"], note_text):
            failures.setdefault(k, []).append("unsupported")
        if EFFECT.search(links[k]["tail"]):
            failures.setdefault(k, []).append("effect")
        # the audit blames the later of two like clauses: here, a problem's own words (its clause rule's run)
        before = said + [chosen[j]["tail"] for j in range(k) if chosen[j] and chosen[j]["tail"]]
        if (_retells(links[k]["tail"], openings, auditor.rules["repeat"].get("clause_run", 8))
                or _retells(links[k]["tail"], before + named, TAIL_ECHO)):
            failures.setdefault(k, []).append("repeat")
    for k, link in enumerate(links):
        if link and link["cut"] and k not in best:  # its own words broke the contract and were dropped
            failures.setdefault(k, []).insert(0, "format")
    return {k: list(dict.fromkeys(reasons)) for k, reasons in failures.items()}


def _avoid(said: list[str], keep: list[str], always: tuple[str, ...] = ()) -> list[str]:
    """Words of clauses the draft already has or that failed (`said`), for the model not to write again
    (on the 20 cases, clauses repeating an earlier section's went from 5 to 0 of 120 links; adding the
    note's other problems' words did not cut retellings of them, 6 and 6): words of
    two characters or more, less the tail openings and any word inside `keep` (the section's openings and
    roots), so the choice of a root is not pushed aside; `always` are avoided whatever was said. Example:
    _avoid(["对问题的解决缺乏重视"], ["为民情怀不深"]) == ["缺乏", "解决", "重视", "问题"]"""
    from pipeline.corpus.store import tokenize

    words = {w for text in said for w in tokenize(text) if w not in TAIL_STARTS} | set(always)
    return sorted(w for w in words if not any(w in k for k in keep))


def _retells(text: str, openings: list[str], run: int) -> bool:
    """Whether `text` carries a run of `run` characters of one of `openings` (punctuation aside).
    Example: _retells("对党员思想动态掌握不够", ["支部对党员思想动态掌握不够，2名党员……"], 8) is True"""
    from pipeline.checks.audit import longest_shared

    return longest_shared(re.sub(r"\W", "", text), [re.sub(r"\W", "", o) for o in openings]) >= run


def _finish(run: _Run, sections: list, note: str, cancelled: bool = False) -> DraftResult:
    from pipeline.checks.runner import check_text

    t = time.perf_counter()
    done = [s for s in sections if s]
    text = "\n".join(s["text"] for s in done)
    check = check_text(text, corpus_dir=run.config.corpus, note_text=note, cache_dir=run.config.cache).to_dict() if text else {}
    run.timed("check", time.perf_counter() - t)
    status = "cancelled" if cancelled else "done"
    return DraftResult(text, done, check, bool(check.get("passed")) and not cancelled, run.record.path, {},
                       status, run.record["run_id"])
