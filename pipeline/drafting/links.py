"""Links: a section's sentences that tie each of its problems to the thinking behind it.

A link opens with words the grammar fixes (the note's problem, a connective such as 根子在于, the unit), names
one of the thinking roots it is offered, and may go on with one clause of the model's own (对……, 认为只要……就……,
满足于……, 习惯于……). This module holds the link's contract (one JSON schema, the endpoint's grammar and the
validator here), its text, the checks on its clause, and `write_links`, which runs each link through the
write–audit–regenerate loop (loop.py). A clause that still fails is cut; the root stays.
Left out: which problems and roots a section has (plan.py), the heading and paragraph (assembly.py), the
audit and copy check themselves (checks/).
"""

import re
from dataclasses import dataclass
from functools import partial

from pipeline.drafting.assembly import section_heading
from pipeline.drafting.fixes import assemble, clean_field
from pipeline.drafting.loop import Budget, parse_json, regenerate
from pipeline.errors import ModelError
from pipeline.note.reader import FRAMING
from pipeline.prompts import load_prompt

EXTRA_CALLS = 1  # regenerations of a link whose clause fails the audit or the copy check
SECTION_EXTRA_CALLS = 2  # and of a section's links in all
# one call per link, not one per section: a section in one reply said a clause twice or retold the next
# problem (see evals/bench_draft.py, sections clean as first written)
PER_LINK = True

# A clause's characters: no quotes or backslashes (they break the JSON a grammar produces), no digits (figures
# come only with the note's words), no Latin letters, and no clause punctuation or ellipses: one clause only.
WORD = r'[^"\\\n0-9０-９a-zA-Z，。；：、,.;:！？!?（）()“”‘’「」『』{}\[\]【】…⋯．]'
OPEN_ENDS = tuple("和与及的在对把被将使并且或而从向为")  # a clause that ends on one of these was cut off
# what a link says after the problem's words: its cause. Rotated so a section's links do not all read alike.
CONNECTORS = ("根子在于", "说到底是", "反映出")
# how a clause may open: an attitude, a mindset or a habit; left free, the model wrote consequences and
# remedies (see evals/bench_draft.py, sections clean as first written)
TAIL_STARTS = ("对", "认为只要", "满足于", "习惯于")
# 认为只要 states a condition, and its clause must go on to what the unit took to follow (……就行了): a word of
# complacency, not an act ("认为只要发现问题就立即整改", "认为只要学习就能解决问题" praised the unit; poxi eval)
CONDITION, THEN = "认为只要", "就"
ENOUGH = ("行", "行了", "可以", "可以了", "够了", "好", "万事大吉", "没问题", "不要紧", "无妨", "不用管", "是小事", "能交差")
# after gifts, hospitality or public money taken, 认为只要 reads as the unit excusing it ("认为只要收礼就行")
BREACH = re.compile("收受|收了|收礼|宴请|吃请|月饼|礼品|礼金|红包|购物卡|公款|公车|用车|超标|安排食宿")
# a condition naming what its problem says the unit does not do has it the wrong way round: doing it would have
# been enough ("批评谈心少" → "认为只要批评就能交差"); a thing done badly may be named ("学习不深入" → "认为只要学了就行")
ABSENT = re.compile("少|缺|没有|没人|未|停了")
TAIL_CHARS = (3, 24)  # the model's words after a clause's opening; at 20, clauses stopped mid-word (poxi eval)
# a clause names the thinking at work, not what the problem led to; avoided in every call and refused by the
# check (不影响 is a mindset's words: "认为只要不影响工作就行")
EFFECT_WORDS = ("造成", "导致", "致使", "后果", "负面", "影响")
# the check also refuses what a rewrite reached for instead ("构成了重大风险"); the nudge keeps to the words above
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
    text = text.replace("[", "【").replace("]", "】").rstrip("。；;，, ")  # brackets and carets: see literal
    text = re.sub(r"^(但是|但|同时|另外|此外|还有|而且|并且)[，,]?", "", text)
    text = FRAMING.sub("", text)  # the note's framing is not the problem: "大家觉得主要是调查研究不够"
    if len(text) <= most:
        return text
    cut = max(text.rfind(ch, 0, most) for ch in "，,；;。")
    return text[:cut] if cut >= 8 else text[:most]


def literal(text: str) -> str:
    """A pattern that matches `text` only, written so llama.cpp reads it: llama-cpp-python 0.3.36's server
    crashed on a backslash escape (the "\\." of "2.5趟"), so a metacharacter goes in a one-character class.
    Example: literal("跑2.5趟") == "跑2[.]5趟". ("[", "]" and "^" never reach it: see link_prefix.)"""
    return "".join(f"[{ch}]" if ch in ".*+?()|{}$" else ch for ch in text)


def section_schema(openings: list[str], roots: list[list[str]]) -> dict:
    """The section step's contract, one grammar for the endpoint and the validator here: one link per
    problem, which opens with its `openings` (link_openings), names one of its `roots` and may go on with one
    clause that opens with a TAIL_STARTS word (a CONDITION goes on to THEN). The model's choice is the root
    and its words the tail."""
    lo, hi = TAIL_CHARS
    free = "|".join(s for s in TAIL_STARTS if s != CONDITION)
    # a comma may close the clause, then the string (forbidden, the model ran on until the bound cut it
    # mid-word). The condition has no 就 of its own (a second one garbled it: "认为只要批评就能解决问题就行").
    condition = WORD.replace("[^", f"[^{THEN}", 1)
    mindset = f"|{CONDITION}{condition}{{2,{hi - 10}}}{THEN}({'|'.join(ENOUGH)})"

    def link(opening: str, roots: list[str]) -> dict:
        root = "|".join(map(literal, roots))
        tail = f"(，(({free}){WORD}{{{lo},{hi}}}{'' if BREACH.search(opening) else mindset})，?)?"
        longest = len(opening) + max(map(len, roots)) + 2 + max(map(len, TAIL_STARTS)) + hi
        return {"type": "string", "pattern": f"^({literal(opening)})({root}){tail}$", "maxLength": longest}

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


def tail_failures(links: list[dict | None], best: dict, openings: list[str], earlier: list[str], said: list[str],
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
        if contrary(links[k]["tail"], openings[k]):
            failures.setdefault(k, []).append("contrary")
        # the audit blames the later of two like clauses: here, a problem's own words (its clause rule's run)
        before = said + [chosen[j]["tail"] for j in range(k) if chosen[j] and chosen[j]["tail"]]
        if (retells(links[k]["tail"], openings, auditor.rules["repeat"].get("clause_run", 8))
                or retells(links[k]["tail"], before + named, TAIL_ECHO)):
            failures.setdefault(k, []).append("repeat")
    for k, link in enumerate(links):
        if link and link["cut"] and k not in best:  # its own words broke the contract and were dropped
            failures.setdefault(k, []).insert(0, "format")
    return {k: list(dict.fromkeys(reasons)) for k, reasons in failures.items()}


def contrary(tail: str, opening: str) -> bool:
    """Whether a 认为只要 clause's condition names a thing its problem (`opening`) says is not done: a word of
    two characters or more followed, within 3 characters, by an ABSENT word.
    Example: contrary("认为只要批评就能交差", "班子成员之间批评谈心少，根子在于班子") is True"""
    from pipeline.corpus.store import tokenize

    if not tail.startswith(CONDITION):
        return False
    condition = tail[len(CONDITION):].split(THEN, 1)[0]
    return any(ABSENT.match(opening, found.end() + gap) for word in tokenize(condition) if len(word) >= 2
               for found in re.finditer(re.escape(word), opening) for gap in range(4))


def avoid_words(said: list[str], keep: list[str], always: tuple[str, ...] = ()) -> list[str]:
    """Words of clauses the draft already has or that failed (`said`), for the model not to write again
    (see poxi eval on evals/cases, clauses repeating an earlier section's): words of two characters or more,
    less the tail openings and any word inside `keep` (the section's openings and roots), so the choice of a
    root is not pushed aside; `always` are avoided whatever was said. Example:
    avoid_words(["对问题的解决缺乏重视"], ["为民情怀不深"]) == ["缺乏", "解决", "重视", "问题"]"""
    from pipeline.corpus.store import tokenize

    words = {w for text in said for w in tokenize(text) if w not in TAIL_STARTS} | set(always)
    return sorted(w for w in words if not any(w in k for k in keep))


def retells(text: str, openings: list[str], run: int) -> bool:
    """Whether `text` carries a run of `run` characters of one of `openings` (punctuation aside).
    Example: retells("对党员思想动态掌握不够", ["支部对党员思想动态掌握不够，2名党员……"], 8) is True"""
    from pipeline.checks.similarity import longest_shared

    return longest_shared(re.sub(r"\W", "", text), [re.sub(r"\W", "", o) for o in openings]) >= run


@dataclass
class WrittenLinks:
    """A section's links as written: one {"root", "tail", "cut"} per opening, and what it took."""

    links: list[dict]
    attempts: list[dict]  # every call: its links, and its error or the clauses it had rejected
    first_failures: dict  # "联系k" -> reasons, as the model first wrote it
    cut: list[str]  # links whose every clause failed: the root kept
    replaced: list[str]  # links never written usably: the first root offered


# over 60 lines: `write` is the loop's callback and shares the section's link state (best, bare, failed) with it
def write_links(run, number: int, openings: list[str], roots: list[list[str]], info: dict, dimension: str,
                earlier: list[str], said: list[str], auditor, copy_index) -> WrittenLinks:
    """Write section `number`'s links, each call asked to avoid the words of the draft's clauses so far
    (`said`: earlier sections') and a retry those of the clause that failed. A failed call is sent again in
    plain JSON mode: llama.cpp has crashed on one section's grammar whatever the seed."""
    prompt = load_prompt("section", run.config.prompts_dir)
    best: dict[int, dict] = {}  # link number -> a link that passed, tail and all
    bare: dict[int, dict] = {}  # link number -> a link whose tail failed, without it
    attempts, first, failed = [], {}, []  # failed: tails that failed, for `avoid`
    keep = openings + [r for rs in roots for r in rs]
    named = [r for rs in run.tagger.roots.values() for r in rs]  # every thinking a link may name
    constrained = True
    budget = Budget(SECTION_EXTRA_CALLS)

    def messages(listed: bool, group: list[int]) -> list[dict]:
        return prompt.render(unit=info["unit"] or "本单位", year=info["year"] or "本", meeting=info["meeting"] or "民主生活会",
                             subject=info["subject"], voice=info["voice"], dimension=dimension.replace("/", "和"),
                             problems=[openings[k] for k in group], roots=[roots[k] for k in group], listed=listed,
                             angles=[])

    def write(group: list[int], schema: dict, attempt: int, request: dict) -> dict | None:
        nonlocal constrained
        ask = {"schema": schema} if constrained else {"json_mode": True}
        written = [best[k]["tail"] for k in sorted(best) if best[k]["tail"]]  # this section's tails so far
        try:
            listed = not (constrained and getattr(run.chat, "enforces_schema", False))  # roots in the prompt
            reply = run.call("section", messages(listed, group), max_tokens=80 + 60 * len(group),
                             avoid=avoid_words(said + written + failed, keep, EFFECT_WORDS), **ask, **request)
            got = validate_section(parse_json(reply.text), schema)
        except (ModelError, ValueError) as exc:
            if isinstance(exc, ModelError) and attempt == EXTRA_CALLS and not best and not bare:
                raise
            constrained = constrained and not isinstance(exc, ModelError)
            attempts.append({"attempt": attempt, "links": group, "error": str(exc)})
            if not attempt:
                first.update({f"联系{k}": ["format"] for k in group})
            return None
        links: list[dict | None] = [None] * len(openings)
        for k, link in zip(group, got):
            links[k] = link
        failures = tail_failures(links, best, openings, earlier, said, named, run.note, auditor, copy_index)
        failed.extend(links[k]["tail"] for k in failures if links[k] and links[k]["tail"])
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
        return {k: failures.get(k, ["format"]) for k in group if k not in best}

    def announce(needed: dict) -> None:
        reasons = "；".join(sorted({r for rs in needed.values() for r in rs}))
        run.emit({"type": "step", "step": "regenerate", "message": f"第{number}条有 {len(needed)} 处不合格（{reasons}），重写中"})

    for group in ([[k] for k in range(len(openings))] if PER_LINK else [list(range(len(openings)))]):
        schema = section_schema([openings[k] for k in group], [roots[k] for k in group])
        regenerate(partial(write, group, schema),
                   seed=run.config.seed + 1000 * number + 10 * group[0], extra=EXTRA_CALLS, cancel=run.cancel,
                   budget=budget, announce=announce)
    # a link whose every tail failed keeps its root; one never written names the first root it was offered
    final = [best.get(k) or bare.get(k) or {"root": roots[k][0], "tail": "", "cut": ""} for k in range(len(openings))]
    replaced = [f"联系{k}" for k in range(len(openings)) if k not in best and k not in bare]
    return WrittenLinks(final, attempts, first, sorted(f"联系{k}" for k in bare if k not in best), replaced)
