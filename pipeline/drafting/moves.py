"""Argument moves: the genre's analysis sentences, as frames mined from the corpus and filled with the unit's matter.

A frame (corpus/frames.yaml) keeps a move's connectives and frees its matter: "{subject}对{object}的重要性认识
不足，思想上没有把{object}当作{a}". It is kept only where it occurs in corpus items, and remembers them. Each
section takes the frames of the corpus items retrieved for its problems (`pick_frames`); poxi fills {subject}
and {object} from the note, the model fills the short slots a, b, c in one call under a grammar, and each fill
is checked like a link's clause (the audit, the copy check, effects, numbers) and for parroting: a slot that
pours in the section's thinking or a run of the note's words. A failing fill is written again once with another
seed (loop.py), then cut; a section keeps its links whatever its moves do.
Left out: the links (links.py), retrieval itself (corpus/retrieve.py), the checks themselves (checks/).
"""

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.drafting.links import EFFECT, EFFECT_WORDS, OPEN_ENDS, TAIL_ECHO, WORD, avoid_words, literal, retells
from pipeline.drafting.loop import parse_json, regenerate
from pipeline.errors import InputError, ModelError, ModelTimeout
from pipeline.prompts import load_prompt
from pipeline.textio import read_text

DEFAULT_FRAMES = PROJECT_ROOT / "corpus" / "frames.yaml"
SLOT_LABELS = {"a": "甲", "b": "乙", "c": "丙"}
MOVES_PER_SECTION = 2
SOURCES_PER_SECTION = 24  # corpus items retrieved for a section: few hold a frame (see evals/bench_draft.py --ablation)
MOVE_EXTRA_CALLS = 1  # a fill that fails is written again once (another seed, warmer), then cut
PARROT_ROOT = 4  # a slot sharing this many characters with the section's thinking pours the root in
# what "the object" of a problem ends before: its first word of judgement ("理论学习流于形式" -> "理论学习")
JUDGEMENT = re.compile(r"不|没|未|流于|缺|少|偏|过于|存在|有“|有漏洞|有盲区|有差距|有推诿|弱|差|滞后|松|欠|乏|重形式|"
                       r"走过场|形式化|低|慢|难|粗|虚|软|散|乱|急于|迁就|怕|满足于|停留|仅|只|才|超|铺张|浪费|推诿|拖|"
                       r"多是|多靠|主要靠|(?<=..)有(?!企业|资产|关)")  # "“三会一课”有时走程序", not "国有企业"
# a problem of doing too much or doing wrong, not of neglect: frames about a neglected duty read the wrong way after it
EXCESS = re.compile(r"铺张|浪费|超标|超过|违规|违纪|收受|宴请|吃请|一刀切|照本宣科|照稿|急于|层层加码|过多|过频|搞|迁就|推诿|摊派|多靠")
COUNTED = re.compile(r"[一二两三四五六七八九十百千几]+[个次年月天周项名件起家人条篇]")
LEADS = re.compile(r"^(全年|今年|去年|年内)?(班子成员|班子|领导班子|党委|党组|支部|我们|我|本人|个别|部分|有的|一些|少数)?(的)?")


@dataclass(frozen=True)
class Frame:
    id: str
    template: str  # "{subject}", "{object}" and slot names in braces
    slots: dict  # slot -> (least, most) characters
    hints: dict  # slot -> what it holds, shown to the model
    items: tuple[str, ...]  # corpus item ids the frame occurs in
    forbid: str = ""  # characters no slot may hold: the frame's own structure words ("重轻" for 重……、轻……)
    neglect_only: bool = False  # reads right only after a duty neglected, not after an excess ("节庆活动铺张")

    @property
    def needs_object(self) -> bool:
        return "{object}" in self.template


def load_frames(items, path: str | Path | None = None) -> list[Frame]:
    """The frames of `path` that occur in at least one of the corpus `items`, each with those items' ids."""
    path = Path(path or DEFAULT_FRAMES)
    try:
        raw = yaml.safe_load(read_text(path))["frames"]
        frames = []
        for f in raw:
            find = re.compile(f["find"])
            found = tuple(item.id for item in items if find.search(item.text))
            if found:
                frames.append(Frame(str(f["id"]), str(f["template"]), {k: tuple(v) for k, v in f["slots"].items()},
                                    {k: str(v) for k, v in (f.get("hint") or {}).items()}, found, str(f.get("forbid") or ""),
                                    f.get("for") == "neglect"))
        return frames
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, re.error) as exc:
        raise InputError(f"句式文件「{path}」无法读取或格式不对：{exc}") from None


def sources(run, retriever, spec: dict, problems: list[dict]) -> list:
    """Corpus items closest to this section's problems, its dimension's first: their frames are the section's
    moves (their sentences are never shown: the model copied them). The ablation's "random" takes any items
    (seeded by the section), "none" none."""
    if run.angles == "none":
        return []
    if run.angles == "random":
        import random

        return random.Random(spec["dimension"] + run.note).sample(run.items, min(SOURCES_PER_SECTION, len(run.items)))
    query = "；".join(p["text"] for p in problems) or spec["dimension"].replace("/", "、")
    hits = retriever.search(query, SOURCES_PER_SECTION, dimension=spec["dimension"])
    if len(hits) < SOURCES_PER_SECTION:
        hits += retriever.search(query, SOURCES_PER_SECTION - len(hits), exclude={h.id for h in hits})
    return hits


def pick_frames(frames: list[Frame], hit_ids: list[str], used: set[str], most: int) -> list[Frame]:
    """Up to `most` frames not `used` yet in this draft, those of the best-ranked retrieved items first."""
    rank = {item: n for n, item in enumerate(hit_ids)}
    ranked = sorted((f for f in frames if f.id not in used and rank.keys() & set(f.items)),
                    key=lambda f: min(rank[i] for i in f.items if i in rank))
    return ranked[:most]


def problem_object(title: str, word: str) -> str:
    """What a problem is about, in the note's words: its title up to the first word of judgement, without a
    leading subject; "" when that leaves under 2 or over 7 characters, or characters a slot may not hold.
    Example: problem_object("理论学习流于形式", r"[^，]") == "理论学习"; problem_object("班子成员调研少", r"[^，]") == "调研" """
    title = re.sub(r"^(对|在|抓)", "", LEADS.sub("", re.sub(r"^[\dA-Za-z]+[个名家所项次起]?", "", re.split(r"[，,；;：:。]", title)[0])))
    cut = JUDGEMENT.search(title)
    obj = title[: cut.start()] if cut else title
    obj = re.sub(r"(的|工作中|中|上|推进|开展)$", "", obj)
    for mark in "中的对":  # too long: its first part ("招商中对企业提出的" -> "招商", "分管股室的同志要求" -> "分管股室")
        if len(obj) > 7 and len(obj.split(mark)[0]) >= 2:
            obj = obj.split(mark)[0]
    obj = re.sub(r'"([^"]*)"', r"“\1”", obj)  # a note's ASCII quotes, paired
    # at 8 or more the audit reads the link's problem after the move as a repeat of it (its clause run)
    return obj if 2 <= len(obj) <= 7 and re.fullmatch(f"(?:{word}|[“”《》])+", obj) else ""


def fill_pattern(frame: Frame, fixed: dict, word: str) -> str:
    """The grammar's pattern for one fill: the frame's words and poxi's fills literal, each model slot a group
    of `word` characters within its bounds."""
    parts = re.split(r"(\{\w+\})", frame.template)
    if frame.forbid:  # "[^…]" less the frame's structure words: "多但少处理拖了多" cannot be written
        word = word.replace("[^", "[^" + re.sub(r"[^\u4e00-\u9fff]", "", frame.forbid), 1)
    out = []
    for part in parts:
        name = part[1:-1] if part.startswith("{") else None
        if name in frame.slots:
            lo, hi = frame.slots[name]
            out.append(f"(?P<{name}>{word}{{{lo},{hi}}})")
        elif name:
            out.append(literal(fixed[name]))
        else:
            out.append(literal(part))
    return "".join(out)


def fill_schema(frame: Frame, fixed: dict, word: str) -> dict:
    pattern = re.sub(r"\?P<\w+>", "", fill_pattern(frame, fixed, word))  # llama.cpp's patterns name no groups
    longest = len(frame.template.format(**{k: "" for k in frame.slots}, **fixed)) + sum(hi for _, hi in frame.slots.values())
    return {"type": "object", "additionalProperties": False, "required": ["句子"],
            "properties": {"句子": {"type": "string", "pattern": f"^{pattern}$", "maxLength": longest}}}


def read_fill(text: str, frame: Frame, fixed: dict, word: str) -> dict | None:
    """The slots of a filled sentence, or None when it does not follow the frame."""
    match = re.fullmatch(fill_pattern(frame, fixed, word), text.strip().rstrip("。"))
    return match.groupdict() if match else None


def shown(frame: Frame, fixed: dict) -> str:
    """The frame as the model is shown it: poxi's fills in place, each slot a label. Example: 对“如何（甲）”考虑得多"""
    return frame.template.format(**fixed, **{k: f"（{SLOT_LABELS[k]}）" for k in frame.slots})


def parroting(slots: dict, roots: list[str], note: str, run: int, problem: str = "", obj: str = "") -> bool:
    """Whether a slot pours in the section's thinking (a run of PARROT_ROOT of a root, or more than half its
    character pairs from the roots), a run of `run` characters of the note, 3 characters of the problem it
    speaks of (4; besides its object: "读原文" may stay) or 3 of the frame's `obj` (already in the sentence), or two slots share 3."""
    from pipeline.checks.similarity import longest_shared

    values = [v for v in slots.values() if v]
    if any(longest_shared(a, [b]) >= 3 for i, a in enumerate(values) for b in values[i + 1 :]):
        return True  # two slots saying one thing: "抓党纪教育" twice, "重抓轻放"/"轻抓重放"
    if obj and any(longest_shared(v, [obj]) >= 3 for v in values):
        return True  # the frame names the object already: "特别是在子公司管理不力时对子公司的时候"
    if problem and any(longest_shared(v.replace(obj, "") if obj else v, [problem]) >= 4 for v in values):
        return True  # the problem told again: "……另一方面，对子公司监管不力" after 子公司监管不到位
    root_pairs = {r[i : i + 2] for r in roots for i in range(len(r) - 1)}

    def from_root(v: str) -> bool:  # a run of the root, or most of its words rearranged ("抓落实的劲头")
        pairs = [v[i : i + 2] for i in range(len(v) - 1)]
        return longest_shared(v, roots) >= PARROT_ROOT or len(pairs) >= 2 and sum(p in root_pairs for p in pairs) * 2 > len(pairs)

    return any(from_root(v) or longest_shared(v, [note]) >= run for v in values)



def write_moves(run, number: int, frames: list[Frame], problems: list[dict], roots: list[str], heading: str,
                links_body: str, info: dict, auditor, copy_index, earlier: list[str], said: list[str],
                most: int = MOVES_PER_SECTION) -> list[dict]:
    """A move for each of the first `most` frames the section's problems can fill (a frame about {object}
    needs a problem whose object can be read), in order: each filled by one constrained call and checked in
    its section as it would read (heading, the moves kept so far, this one, the links). A move that fails
    twice is cut (text "")."""
    prompt = load_prompt("move", run.config.prompts_dir)
    out: list[dict] = []
    for frame in frames:
        k = len(out)
        if k == most:
            break
        taken = [m["object"] for m in out if m.get("object")]
        problem, obj = _subject_matter(problems, k, frame, taken)
        if frame.needs_object and not obj:
            continue  # no problem names a thing the frame could be about, or its thing has a move already
        if frame.neglect_only and EXCESS.search(problem["title"]):
            continue  # "班子对节庆活动的重要性认识不足" after 节庆活动铺张 points the wrong way
        move = {"frame": frame.id, "object": obj if frame.needs_object else "", "text": "", "slots": {},
                "attempts": [], "first_failures": []}
        out.append(move)
        fixed = {"subject": info["subject"], "object": obj}
        kept = "".join(m["text"] + "。" for m in out if m["text"])
        if not frame.slots:  # poxi's fills only: checked, never a call
            sentence = frame.template.format(**fixed)
            reasons = fill_failures(sentence, {}, roots, heading, kept, links_body, run.note, auditor, copy_index,
                                    earlier, said)
            move.update(text="" if reasons else sentence, first_failures=reasons)
            continue
        messages = prompt.render(unit=info["unit"] or "本单位", meeting=info["meeting"] or "民主生活会",
                                 subject=info["subject"], root=roots[0] if roots else heading,
                                 problem=problem["title"], frame=shown(frame, fixed),
                                 hints=[(SLOT_LABELS[s], frame.hints[s]) for s in frame.slots if frame.hints.get(s)])
        check = partial(fill_failures, roots=roots + list(frame.hints.values()), heading=heading, kept=kept,
                        links_body=links_body, note=run.note, auditor=auditor, copy_index=copy_index,
                        earlier=earlier, said=said, problem=problem["title"], obj=move["object"])
        _fill(run, move, frame, fixed, messages, said + roots, check,
              seed=run.config.seed + 1000 * number + 100 + 10 * k)
    return out


def _fill(run, move: dict, frame: Frame, fixed: dict, messages: list[dict], said: list[str],
          check: Callable[[str, dict | None], list[str]], seed: int) -> None:
    """Fill `frame`'s slots in one call under its grammar through the write–audit–regenerate loop, each
    call asked to avoid the words of `said` and of the slots that failed; `move` gets every attempt, and its
    text and slots once a fill passes `check`."""
    schema = fill_schema(frame, fixed, WORD)
    failed: list[str] = []  # slots that failed

    def write(attempt: int, request: dict) -> list[str]:
        try:
            reply = run.call("move", messages, schema=schema, max_tokens=80,
                             avoid=avoid_words(said + failed, [fixed["object"]], EFFECT_WORDS), **request)
            sentence = str(parse_json(reply.text).get("句子") or "")
        except ModelTimeout:
            raise
        except (ModelError, ValueError) as exc:
            move["attempts"].append({"attempt": attempt, "error": str(exc)})
            reasons = ["format"]
        else:
            slots = read_fill(sentence, frame, fixed, WORD)
            if slots and any(len(v) >= frame.slots[k][1] for k, v in slots.items()):
                slots = None  # stopped at its bound, mid-word: "……作为深入实际调研和了解民"
            reasons = check(sentence.strip().rstrip("。"), slots)
            move["attempts"].append({"attempt": attempt, "text": sentence, "reasons": reasons})
            if reasons:
                failed.extend(v for v in (slots or {}).values() if v)
            else:
                move.update(text=sentence.strip().rstrip("。"), slots=slots)
        if not attempt:
            move["first_failures"] = reasons
        return reasons

    regenerate(write, seed=seed, extra=MOVE_EXTRA_CALLS, cancel=run.cancel)


def fill_failures(sentence: str, slots: dict | None, roots: list[str], heading: str, kept: str, links_body: str,
                  note: str, auditor, copy_index, earlier: list[str], said: list[str], problem: str = "",
                  obj: str = "") -> list[str]:
    """Why a filled sentence may not stand, named as links.tail_failures names a clause's ([] when it may)."""
    from pipeline.checks.structure import new_numbers

    if slots is None or any(v.endswith(OPEN_ENDS) for v in slots.values()):
        return ["format"]
    reasons = []
    run = auditor.rules["repeat"].get("clause_run", 8)
    if parroting(slots, roots + [heading], note, run, problem, obj):
        reasons.append("parrot")
    if any(EFFECT.search(v) for v in slots.values()):
        reasons.append("effect")
    counted = [m for v in slots.values() for m in COUNTED.findall(v) if m not in note]  # "拖了近三个月"
    if new_numbers("".join(slots.values()), note) or counted:
        reasons.append("unsupported")
    if any(retells(v, said, TAIL_ECHO) for v in slots.values() if len(v) >= TAIL_ECHO):
        reasons.append("repeat")
    body = kept + sentence + "。" + links_body
    start = len(heading) + 1 + len(kept)
    end = start + len(sentence)
    # a finding in the move, or one the move brings on elsewhere: its object said again by a link's problem
    # reads as a repeat there ("……没有真正把高标准农田项目验收作为…。3个高标准农田项目验收超时……")
    before = {(f.kind, f.text) for f in auditor.section(heading, kept + links_body, earlier)}
    reasons += [f.kind for f in auditor.section(heading, body, earlier)
                if start <= f.start < end or f.start < end and start < f.end or (f.kind, f.text) not in before]
    reasons += ["copied" for flag in copy_index.check(f"{heading}。{body}") if flag.start < end and start < flag.end]
    return list(dict.fromkeys(reasons))


def _subject_matter(problems: list[dict], k: int, frame: Frame, taken: list[str]) -> tuple[dict, str]:
    """The problem move `k` speaks of (the section's problems in turn) and its object; a problem whose object
    cannot be read, or that an earlier move of the section was about (the audit reads the same words twice
    as a repeat), is passed over for the next."""
    turn = problems[k % len(problems):] + problems[: k % len(problems)]
    for p in turn:
        obj = problem_object(p["title"], WORD)
        if not frame.needs_object or obj and obj not in taken:
            return p, obj
    return turn[0], ""
