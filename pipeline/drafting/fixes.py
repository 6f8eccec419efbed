"""Deterministic assembly of model-written fields into the genre's paragraph.

The section step returns JSON fields; these pure functions clean one field (chat residue, labels,
numbering, trailing punctuation) and join fields into sentences. Left out: judging text (checks/)
and deciding what to replace (links.py, moves.py).
"""

import re

RESIDUE = re.compile(r"\*\*|__|`+|^#{1,6}\s*|^[-*•]\s+")
LABEL = re.compile(r"^(标题|根源|联系|危害|问题\s*\d*|原因)\s*[：:]\s*")
MARKER = re.compile(r"^\s*([（(][一二三四五六七八九十\d]+[）)]|[一二三四五六七八九十]+[是、]|\d+[.．、])\s*")


def clean_field(text: str) -> str:
    """One field as a bare clause: no residue, label, numbering, line breaks or closing punctuation.

    Example: clean_field("**标题：** 学习自觉性不强。") == "学习自觉性不强"
    """
    text = "".join(RESIDUE.sub("", line.strip()) for line in (text or "").split("\n"))
    text = MARKER.sub("", LABEL.sub("", text.strip()))
    text = re.sub(r"([。！？；;，,])[。！？；;，,]+", r"\1", text).strip().strip("\"' ").rstrip("。！？；;，,：: ")
    # a quote mark at either end with no partner inside is residue; “三会一课”有时走程序 keeps its opening one
    if text[:1] == "“" and text.count("“") > text.count("”"):
        text = text[1:]
    if text[-1:] == "”" and text.count("”") > text.count("“"):
        text = text[:-1]
    return text.strip().rstrip("。！？；;，,：: ")


def assemble(parts: list[str]) -> str:
    """Cleaned fields joined as sentences, each closed with 。 (empty ones skipped)."""
    return "".join(p + "。" for p in (clean_field(p) for p in parts) if p)

