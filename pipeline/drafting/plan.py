"""Plan: the note's problems, the cause dimension each goes to, and the thinking each link may name.

Deterministic but for one case: a note in free prose, whose problems the model is asked to quote (its answer
kept only where it quotes the note). Left out: the roots' ranking itself (roots.py), writing (links.py, moves.py).
"""

import re

from pipeline.corpus.samples import DimensionTagger
from pipeline.drafting.loop import parse_json, regenerate
from pipeline.errors import ModelError
from pipeline.prompts import load_prompt


def read_problems(run, note) -> list[dict]:
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
    found: list[dict] = []

    def write(attempt: int, request: dict) -> list[str] | None:
        try:
            reply = run.call("read_note", messages, schema=schema, max_tokens=600, **request)
            quotes = parse_json(reply.text).get("问题") or []
        except (ModelError, ValueError):
            return None
        kept = [q.strip("。；; ") for q in quotes if isinstance(q, str) and q.strip("。；; ") and q.strip("。；; ") in note.text]
        found.extend({"title": re.split(r"[，,。；;]", q)[0][:20], "facts": [q], "text": q} for q in kept)
        return [] if kept else ["no quote of the note"]

    regenerate(write, seed=run.config.seed, extra=1)  # no cancel here: the run checks it once the plan is made
    return found


def general_titles(problems: list[dict], dimension: str, taken: set[str], tagger: DimensionTagger) -> tuple[list[str], str]:
    """What a general section (one no problem chose) speaks of: the titles of the problems closest to its
    `dimension`, those an earlier section named (`taken`) last, whole titles within 40 characters; and the
    words its link opens with (those titles, or the closest problem's title cut at 20 when none fits)."""
    closest = sorted(problems, key=lambda p: (p["title"] in taken, -tagger.scores(p["title"], p["text"])[dimension]))
    titles = [p["title"] for p in closest if len(p["title"]) <= 20]
    while len(titles) > 1 and len("、".join(titles)) > 40:
        titles.pop()  # whole titles only: a title cut in two reads as nonsense
    return titles, "、".join(titles or [closest[0]["title"][:20]])


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


def section_roots(pool: list[str], links: int, turn: int = 0, most: int = 4, texts: list[str] | None = None,
                  tagger: DimensionTagger | None = None) -> list[list[str]]:
    """The thinking each of a section's `links` links may name: `pool`, turned by `turn`, dealt out in turn
    so no two links of a section name the same one, at most `most` each. Left to choose from a whole pool,
    the model named the same favourite for every unit. Given each link's problem (`texts`), a link is offered
    instead the roots of `pool` that fit its problem best (pipeline/roots.py, with `tagger`'s roots and cues),
    still none to two links, at most roots.OFFERED (dealt blind, many did not fit: see evals/bench_roots.py). Example:
    section_roots(["a", "b", "c"], 2) == [["a", "c"], ["b"]]; section_roots(["a", "b", "c"], 1, 1, 2) == [["b", "c"]]"""
    if texts:
        from pipeline.drafting.roots import OFFERED, RootRanker, deal_roots

        ranker = RootRanker(tagger or DimensionTagger())
        return deal_roots([ranker.rank(text, pool=pool, turn=turn) for text in texts], min(most, OFFERED))
    turned = pool[turn % len(pool) :] + pool[: turn % len(pool)]
    return [(turned[k::links] or turned)[:most] for k in range(links)]
