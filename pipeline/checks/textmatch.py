"""Normalised text and exact matching for the copy check (copycheck.py).

Normalising: NFKC full/half width, lower case; punctuation, quotes and whitespace dropped; a title in 《》 and
each canonical formulation from corpus/canonical_terms.yaml become one private-use character. Matching:
polynomial k-gram hashes, winnowing (Schleimer, Wilkerson & Aiken 2003), runs shared by two strings, maximal
exact blocks and edit-tolerant chains of them. Left out: every decision about what is copied (copycheck.py).
"""

import re
import unicodedata
from pathlib import Path

import numpy as np
import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.corpus.samples import split_sentences
from pipeline.errors import InputError

DEFAULT_TERMS = PROJECT_ROOT / "corpus" / "canonical_terms.yaml"
K = 5  # k-gram length: no match shorter than this is seen
W = 5  # winnowing window: every shared run of K + W - 1 = 9 characters is guaranteed to be found
MIN_RUN = 4  # runs shorter than this do not count towards containment, nor as blocks of a chain
_BASE = np.uint64(1_000_003)
_TITLE = re.compile(r"《([^《》\n]{2,60})》")


def load_terms(path: str | Path | None = None) -> list[str]:
    """Canonical terms from YAML (`terms: [...]`), normalised, longest first."""
    from pipeline.textio import read_text

    path = Path(path or DEFAULT_TERMS)
    try:
        data = yaml.safe_load(read_text(path)) or {}
        raw = [str(t) for t in data.get("terms") or []]
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise InputError(f"规范表述文件「{path}」无法读取或格式不对：{exc}") from None
    terms = {"".join(norm_chars(t)[0]) for t in raw}
    return sorted((t for t in terms if len(t) > 1), key=lambda t: (-len(t), t))


_FOLDED: dict[str, str] = {}  # character -> what it normalises to ("" when dropped), filled as met


def _fold(ch: str) -> str:
    if 0xFF01 <= ord(ch) <= 0xFF5E:  # full-width ASCII forms
        ch = chr(ord(ch) - 0xFEE0)
    elif not ch.isascii() and not ("\u4e00" <= ch <= "\u9fff"):
        ch = unicodedata.normalize("NFKC", ch)
    return "".join(c.lower() for c in ch if c.isalnum())


def norm_chars(text: str) -> tuple[list[str], list[int]]:
    """Normalised characters of text (no terms) and the text offset each came from."""
    chars, pos, folded = [], [], _FOLDED
    for i, ch in enumerate(text):
        f = folded.get(ch)
        if f is None:
            f = folded[ch] = _fold(ch)
        for c in f:
            chars.append(c)
            pos.append(i)
    return chars, pos


class Normaliser:
    """text -> (normalised string, spans): spans[i] = (start, end) of normalised char i in the text.

    A title in 《》 becomes one character (the same for the same title), then each canonical term does."""

    def __init__(self, terms: list[str]):
        self.terms = terms
        self.pattern = re.compile("|".join(map(re.escape, terms))) if terms else None
        self.code = {t: chr(0xE000 + i) for i, t in enumerate(terms)}

    def __call__(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        chars, pos = norm_chars(text)
        spans = [(p, p + 1) for p in pos]
        if "《" in text:
            chars, spans = _collapse_titles(text, chars, spans)
        norm = "".join(chars)
        if not self.pattern:
            return norm, spans
        out, out_spans, last = [], [], 0
        for m in self.pattern.finditer(norm):
            out.append(norm[last : m.start()])
            out_spans.extend(spans[last : m.start()])
            out.append(self.code[m.group()])
            out_spans.append((spans[m.start()][0], spans[m.end() - 1][1]))
            last = m.end()
        out.append(norm[last:])
        out_spans.extend(spans[last:])
        return "".join(out), out_spans


def _collapse_titles(text: str, chars: list[str], spans: list[tuple[int, int]]):
    """Each 《title》 -> one private-use character derived from the title (stable across runs and caches)."""
    import zlib

    out, out_spans, i = [], [], 0
    for m in _TITLE.finditer(text):
        a, b = m.start(1), m.end(1)
        while i < len(chars) and spans[i][0] < a:
            out.append(chars[i])
            out_spans.append(spans[i])
            i += 1
        j = i
        while j < len(chars) and spans[j][0] < b:
            j += 1
        if j > i:
            out.append(chr(0xF0000 + zlib.crc32("".join(chars[i:j]).encode()) % 0xFFFD))
            out_spans.append((spans[i][0], spans[j - 1][1]))
        i = j
    out.extend(chars[i:])
    out_spans.extend(spans[i:])
    return out, out_spans


def sentence_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, sentence) for each sentence of the text; lines never join. Uses corpus.split_sentences."""
    spans, offset = [], 0
    for line in text.split("\n"):
        cursor = 0
        for sentence in split_sentences(line):
            start = line.find(sentence, cursor)
            spans.append((offset + start, offset + start + len(sentence), sentence))
            cursor = start + len(sentence)
        offset += len(line) + 1
    return spans


def kgram_hashes(norm: str, k: int = K) -> np.ndarray:
    """Polynomial hashes (uint64, wrapping) of every k-gram of the string."""
    if len(norm) < k:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - k + 1
    h = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        h = h * _BASE + codes[j : j + n]
    return h


def winnow(hashes: np.ndarray, w: int = W) -> np.ndarray:
    """Positions of the winnowed fingerprints: the minimum hash of each window of w k-grams."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(hashes) <= w:
        return np.array([int(np.argmin(hashes))])
    windows = np.lib.stride_tricks.sliding_window_view(hashes, w)
    return np.unique(np.arange(len(windows)) + windows.argmin(axis=1))


def compare(a: str, b: str) -> tuple[int, list[tuple[int, int]]]:
    """Longest common run of normalised a and b, and a's runs of >= MIN_RUN chars shared with b."""
    from difflib import SequenceMatcher

    longest = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b)).size
    grams = {b[i : i + MIN_RUN] for i in range(len(b) - MIN_RUN + 1)}
    covered = [False] * len(a)
    for i in range(len(a) - MIN_RUN + 1):
        if a[i : i + MIN_RUN] in grams:
            covered[i : i + MIN_RUN] = [True] * MIN_RUN
    runs, start = [], None
    for i, flag in enumerate(covered + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i))
            start = None
    return longest, runs


def blocks(r: str, s: str, grams: dict[str, list[int]]) -> list[tuple[int, int, int]]:
    """Maximal exact matches (r_start, s_start, length) of at least MIN_RUN characters; grams: s's MIN_RUN-grams."""
    found = []
    for i in range(len(r) - MIN_RUN + 1):
        for j in grams.get(r[i : i + MIN_RUN], ()):
            if i and j and r[i - 1] == s[j - 1]:
                continue  # inside a longer match
            n = MIN_RUN
            while i + n < len(r) and j + n < len(s) and r[i + n] == s[j + n]:
                n += 1
            found.append((i, j, n))
    return found


def chains(found: list[tuple[int, int, int]], gap: int, identity: float, least: int) -> list[tuple[int, int, int]]:
    """Segments (r_start, r_end, matched) from blocks: for each block, the chain ending there that matches most,
    consecutive blocks at most `gap` apart on both sides; kept when it matches at least `least` characters and
    its blocks cover `identity` of its span on both sides. Example: blocks of 8, 7 and 8 one changed character
    apart -> a segment of 25 characters, 23 matched."""
    found = sorted(found)
    best: list[tuple[int, int, int]] = []  # per block: (matched, r_start, s_start) of its best chain
    out = []
    for k, (i, j, n) in enumerate(found):
        chain = (n, i, j)
        for p in range(k):
            i2, j2, n2 = found[p]
            if 0 <= i - i2 - n2 <= gap and 0 <= j - j2 - n2 <= gap and best[p][0] + n > chain[0]:
                chain = (best[p][0] + n, best[p][1], best[p][2])
        best.append(chain)
        matched, r0, s0 = chain
        if matched >= least and matched >= identity * max(i + n - r0, j + n - s0):
            out.append((r0, i + n, matched))
    return out


def gram_positions(s: str) -> dict[str, list[int]]:
    """MIN_RUN-gram -> its positions in s (for blocks)."""
    grams: dict[str, list[int]] = {}
    for j in range(len(s) - MIN_RUN + 1):
        grams.setdefault(s[j : j + MIN_RUN], []).append(j)
    return grams


def merge_intervals(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of (start, end) intervals, sorted."""
    out: list[list[int]] = []
    for a, b in sorted(windows):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
