"""Quotations in Chinese text: words attributed to 习近平总书记, and everything inside quotation marks.

Used by the copy check (copycheck.py): a draft's quotation of 习近平总书记 that a sample quotes too is reported
as a quotation, not as copying. Left out: who else is quoted, and whether a quotation is accurate.
"""

import re

_SPEAKER = r"(?:习近平总书记|习近平同志|习近平主席|总书记|习近平(?=[^新]))"  # not 习近平新时代…思想
# quoted words: speaker, an occasion without a comma ("在……大会上"), a verb, then quotation marks
_QUOTED = re.compile(
    _SPEAKER + r"[^。！？；!?;，,“”「」『』\"\n]{0,30}?(?:强调|指出|要求|说|讲|提出|号召|告诫|嘱托|寄语|论述|阐述)"
    r"(?:过|了|的|道)?(?:那样|我们)?\s*[：:，,]?\s*(?=[“「『\"])")
# words without quotation marks: the rest of the sentence after "习近平总书记（鲜明）指出，"
_SAID = re.compile(_SPEAKER + r"[^。！？；!?;，,“”「」『』\"\n]{0,4}?(?:强调|指出|说)(?:过|道)?\s*[：:，,]\s*(?![“「『\"])")
_OPEN = {"“": "”", "「": "」", "『": "』", '"': '"'}


def quote_spans(text: str, attributed: bool = True) -> list[tuple[int, int]]:
    """(start, end) of quoted words in text. attributed=True: only words of 习近平总书记 (quoted after a speech
    verb, or the rest of the sentence after "强调，"); False: those plus everything inside quotation marks.
    Example: quote_spans("总书记强调，“要X。”") -> [(7, 9)]"""
    found = {(a, b) for _, a, b in attributed_spans(text)}
    if not attributed:
        for m in re.finditer(r"“([^“”\n]{1,200})”|「([^「」\n]{1,200})」", text):
            found.add(m.span(1) if m.group(1) is not None else m.span(2))
    return sorted(found)


def attributed_spans(text: str) -> list[tuple[int, int, int]]:
    """(attribution start, words start, words end) of each passage attributed to 习近平总书记."""
    found = []
    for m in _QUOTED.finditer(text):
        i = m.end()
        while i < len(text) and text[i] in _OPEN:  # “甲”“乙”、“丙”: a list of quoted slogans
            close = text.find(_OPEN[text[i]], i + 1)
            if close < 0:
                break
            found.append((m.start(), i + 1, close))
            i = close + 1
            if text[i : i + 1] == "、":
                i += 1
    for m in _SAID.finditer(text):
        end = re.search(r"[。！？!?\n]|$", text[m.end() :]).start() + m.end()
        found.append((m.start(), m.end(), end))
    return sorted(found)
