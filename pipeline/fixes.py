"""Deterministic fixes of model-written text: residue and labels, headings, invented numbers, repeats,
sentences still copied, and note problems no section addressed.

Each fix is a pure function on strings, so the chain can apply it and a test can pin it. Left out:
deciding when to apply them (chain.py) and judging the result (check.py, structure.py).
"""

import re

from .corpus import split_heading, split_sentences

MARKDOWN = [(re.compile(r"\*\*|__|`+"), ""), (re.compile(r"(?m)^\s*#{1,6}\s*"), ""), (re.compile(r"(?m)^\s*[-*•]\s+"), "")]
LABELS = re.compile(r"(本单位事实|差距或危害|思想根源|具体(表现|事实)(为|如下)?|危害|总结|正文|标题)[：:]|说明中提到[，,：:]?")
CHAT_RESIDUE = re.compile(r"^(以下是|下面是|好的|当然)[^。\n]*[：:。]\s*|(希望|如需)[^。\n]*(帮助|修改|调整)[^。\n]*[。！]?\s*$")
PLACEHOLDER = re.compile(r"(?<![A-Za-z])[Xx×]{2,}(?![A-Za-z])|某某")


def clean_heading(text: str) -> str:
    text = re.sub(r"[*#`]", "", text)
    text = re.sub(r"^(思想认识上的|问题产生的|主要)?(根源|原因)(在于|是)[：:]?", "", text.strip())
    text = re.sub(r"^\s*([（(][一二三四五六七八九十\d]+[）)]|[一二三四五六七八九十]+[是、]|\d+[.．、])\s*", "", text)
    return text.strip().strip("“”\"'：:。；;，, ").replace("\n", "")


def clean_lines(text: str) -> str:
    """Markdown and chat residue removed line by line; line breaks kept."""
    for pattern, repl in MARKDOWN:
        text = pattern.sub(repl, text)
    return "\n".join(CHAT_RESIDUE.sub("", line).strip() for line in text.split("\n")).strip()


def clean_body(text: str, unit: str, cut_off: bool) -> str:
    """Deterministic fixes of drafted text: residue, labels, numbering, placeholders, line breaks,
    doubled stops, and a sentence cut off by the token limit."""
    text = LABELS.sub("", "".join(clean_lines(text).split("\n")))
    text = re.sub(r"^([（(][一二三四五六七八九十\d]+[）)])\s*", "", text)
    text = PLACEHOLDER.sub(unit, text)
    text = re.sub(r"([。！？])[。！？]+", r"\1", text)
    text = re.sub(r"(?<=[：:。；;])\s*(\d{1,2}|[一二三四五六七八九十])[.．、]\s*", "", text)  # inline list markers
    if cut_off or not re.search(r"[。！？”]$", text):
        last = max(text.rfind(ch) for ch in "。！？")
        text = text[: last + 1] if last > 0 else text.rstrip("，,；;、") + "。"
    return text


def split_section(text: str, dimension: str = "", longest: int = 30) -> tuple[str, str]:
    """A drafted section's heading and body, from "标题：…" / "正文：…" lines or else its first sentence.
    A heading that is only the dimension's name is dropped for the body's first sentence; an over-long
    one is cut at a comma.

    Example: split_section("标题：学习不够深入\n正文：班子……") == ("学习不够深入", "班子……")
    """
    text = clean_lines(text)
    labelled = re.search(r"标题[：:]\s*(.+?)\s*(?=\n|正文[：:]|$)", text)
    first, _, rest = text.partition("\n")
    if labelled:
        heading = labelled.group(1)
        body = re.sub(r"^\s*正文[：:]\s*", "", text[labelled.end() :]).strip()
    elif rest.strip() and len(first) <= longest and not re.search(r"[。！？]", first):
        heading, body = first, rest.strip()  # a heading on a line of its own
    else:
        heading, body = split_heading(text)
    heading = clean_heading(heading)
    if not heading or heading.replace("方面", "") in dimension.split("/") + [dimension]:
        heading, body = split_heading(body)
        heading = clean_heading(heading)
    if len(heading) > longest:
        cut = heading.rfind("，", 0, longest)
        if cut >= 6:
            heading, body = heading[:cut], heading[cut + 1 :] + "。" + body
    return heading, body


# digits: a restated fact, not a judgement; the rest: prompt echoes and openings of a narrative sentence
HEADING_NOISE = re.compile(r"\d|说明|对应|事实|剖析|方面|标题|/|根源$|^(我们|在|通过|随着|近年来|虽然|尽管|作为|具体|思想认识上)")


def good_heading(heading: str, others: list[str]) -> bool:
    """A heading is a judgement of 6–30 characters, new in this draft, with no figures or prompt echoes."""
    return 6 <= len(heading) <= 30 and heading not in others and not HEADING_NOISE.search(heading)


def choose_heading(heading: str, body: str, dimension: str, others: list[str], tagger) -> tuple[str, str]:
    """The model's heading when it is a good one; else the body's first sentence when that is; else the
    dimension's first unused stock heading from the dimensions file (the body keeps its own facts)."""
    if good_heading(heading, others):
        return heading, body
    first, rest = split_section(body)
    if good_heading(first, others) and len(rest) >= 40:
        return first, rest
    stock = [h for h in tagger.headings.get(dimension, []) if h not in others]
    return (stock[0] if stock else heading), body


def drop_invented(body: str, note: str, keep_at_least: int = 80) -> tuple[str, list[str]]:
    """Drop sentences carrying numbers the note never mentions: the model made those facts up.
    When too little would be left, nothing is dropped and the final check reports the numbers."""
    from .structure import new_numbers

    kept, dropped = [], []
    for sentence in split_sentences(body):
        (dropped if new_numbers(sentence, note) else kept).append(sentence)
    if len("".join(kept)) < keep_at_least:
        return body, []
    return "".join(kept), dropped


def drop_flagged(text: str, copy_index, keep_at_least: int = 80) -> tuple[str, list[str]]:
    """Remove sentences still flagged as copied; keep the text when too little would be left."""
    flags = copy_index.check(text)
    kept = text
    for flag in sorted(flags, key=lambda f: -f.start):
        kept = kept[: flag.start] + kept[flag.end :]
    if not flags or len(kept) < keep_at_least:
        return text, []
    return kept, [f.sentence for f in flags]


def drop_repeated(body: str, earlier: list[str]) -> str:
    """Drop sentences said before, in an earlier section or earlier in this one (greedy decoding of a
    small model loops and reopens every section alike)."""
    seen = {re.sub(r"\W", "", sentence) for text in earlier for sentence in split_sentences(text)}
    kept = []
    for sentence in split_sentences(body):
        key = re.sub(r"\W", "", sentence)
        if key not in seen:
            kept.append(sentence)
            seen.add(key)
    return "".join(kept) if len("".join(kept)) >= 40 else body


def add_missing_problems(sections: list[dict], note: str) -> None:
    """A problem the note lists but no section addresses is stated, in the note's own words, in the section
    that shares most with it: a deterministic fix, since a small model sometimes drops a problem."""
    from .structure import extract_note_problems, problem_coverage

    text = "\n".join(s["text"] for s in sections)
    for problem, covered in problem_coverage(text, extract_note_problems(note)):
        if covered:
            continue
        target = max(sections, key=lambda s: len(set(problem) & set(s["text"])))
        target["text"] += f"{problem.rstrip('。；;，,')}，也是这方面问题的具体表现。"
        target.setdefault("added", []).append(problem)
