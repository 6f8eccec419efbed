"""Lexical similarity for the genre audit: normalised text, character n-grams, shared runs, near-duplicates.

Used by audit.py (echo, heading, repeat) and by drafting (longest_shared). Left out: copying against the
corpus (copycheck.py, which aligns runs exactly) and any notion of meaning.
"""

import re
from functools import lru_cache

from pipeline.checks.textmatch import sentence_spans

_ALNUM = re.compile(r"[^\W_]")


def letters(text: str) -> tuple[str, list[int]]:
    """Letters, digits and CJK only, with each kept character's offset. Example: "甲，乙" -> ("甲乙", [0, 2])"""
    pos = [m.start() for m in _ALNUM.finditer(text)]
    return "".join(text[i] for i in pos), pos


def grams(text: str, n: int) -> set[str]:
    """The character n-grams of `text`'s letters."""
    kept = letters(text)[0]
    return {kept[i : i + n] for i in range(len(kept) - n + 1)}


def longest_shared(text: str, others: list[str]) -> int:
    """Length of the longest run of `text` found in any of `others`."""
    best = 0
    for i in range(len(text)):
        while i + best < len(text) and any(text[i : i + best + 1] in o for o in others):
            best += 1
    return best


def bigrams(text: str) -> set[str]:
    """Character bigrams without the genre's commonest (问题, 工作, 班子…)."""
    return grams(text, 2) - {"问题", "存在", "不足", "不够", "工作", "我们", "方面", "情况", "班子", "成员", "不到", "到位"}


@lru_cache(maxsize=4096)
def sentence_norms(text: str) -> tuple[str, ...]:
    """Each sentence of `text`, normalised."""
    return tuple(letters(sentence)[0] for _, _, sentence in sentence_spans(text))


@lru_cache(maxsize=8192)
def _pairs(norm: str) -> frozenset[str]:
    return frozenset(norm[i : i + 2] for i in range(len(norm) - 1))


def similar(a: str, b: str, r: dict, contain: bool = True) -> bool:
    """Same sentence, one inside the other (unless `contain` is off), a Dice coefficient of character bigrams
    of r["similarity"] or more, or (for a sentence of r["contained_min"] characters, `contain` on)
    r["contained"] of its bigrams in the other."""
    if len(b) < r["min_chars"]:
        return False
    if a in b or b in a:  # a heading's words inside a body sentence are the genre
        return contain or a == b
    ga, gb = _pairs(a), _pairs(b)
    shared = len(ga & gb)
    if contain and min(len(a), len(b)) >= r["contained_min"] and shared >= r["contained"] * min(len(ga), len(gb)):
        return True
    return 2 * shared / (len(ga) + len(gb)) >= r["similarity"]

