"""Copy detection against the corpus: winnowed character k-grams, then exact per-sentence comparison.

Text is normalised per character (NFKC full/half width, lower case; punctuation, quotes and whitespace
dropped) and every canonical formulation from corpus/canonical_terms.yaml becomes one private-use
character, so a run lying inside such a term is never long. Source sentences are fingerprinted by
winnowing (Schleimer, Wilkerson & Aiken 2003) over K-grams with window W: every shared run of at least
K + W - 1 = 9 characters shares a fingerprint. A draft sentence queries with all its K-grams, its best
candidates are compared exactly: longest common run and containment (share of its characters covered
by runs of at least MIN_RUN shared with one source sentence).

Thresholds (calibrated on tests/data/copy_cases.yaml, `python -m evals.bench_check --labelled`):
a sentence is copied when its longest run is at least LONGEST (13, the common rule of thumb) or when
containment reaches CONTAINMENT with a run of at least MIN_LONGEST. On the labelled set the originals
(same topics, canonical terms, stock phrases, paraphrases) reach at most containment 0.39 and a run of 8;
formulaic headings ("政治理论学习的自觉性还不够强") reach containment 0.89 but a run of only 8; the weakest
copies (word swaps plus insertions) have containment 0.67 and a run of 11. So the run length separates,
and CONTAINMENT = 0.5, MIN_LONGEST = 10 sit near the middle of both gaps.

Left out: semantic paraphrase detection (no embeddings or models here), copying across sentence
boundaries shorter than a sentence, and any judgement of the draft's structure (see structure.py).
"""

import hashlib
import os
import pickle
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .corpus import PROJECT_ROOT, load_corpus, split_sentences
from .errors import InputError

DEFAULT_TERMS = PROJECT_ROOT / "corpus" / "canonical_terms.yaml"
K = 5  # k-gram length: no match shorter than this is seen
W = 5  # winnowing window: every shared run of K + W - 1 = 9 characters is guaranteed to be found
MIN_RUN = 4  # runs shorter than this do not count towards containment
LONGEST = 13  # a shared run this long marks a sentence as copied
CONTAINMENT = 0.5  # ... or this share of the sentence covered by shared runs,
MIN_LONGEST = 10  # ... together with at least one run this long
MIN_CHARS = 10  # sentences shorter than this (normalised) are never flagged: headings, stock phrases
CANDIDATES = 3  # source sentences compared exactly per draft sentence
VERSION = 1  # bump when the fingerprint format changes, so old caches are rebuilt
_BASE = np.uint64(1_000_003)


@dataclass
class Flag:
    """One copied sentence of the checked text; offsets are character offsets into that text."""

    sentence: str
    position: int  # 1-based sentence number in the text
    start: int
    end: int
    source_id: str  # corpus item id, e.g. "seed-2021-dangshi/04/3"
    source_text: str  # the source sentence
    longest: int  # longest shared run, in normalised characters (a canonical term counts 1)
    containment: float
    runs: list[tuple[int, int]] = field(default_factory=list)  # copied runs, (start, end) offsets into the text
    covered: int = 0  # normalised characters covered by the runs

    def to_dict(self) -> dict:
        return {
            "sentence": self.sentence, "position": self.position, "start": self.start, "end": self.end,
            "source_id": self.source_id, "source_text": self.source_text, "longest": self.longest,
            "containment": round(self.containment, 3), "runs": [list(r) for r in self.runs],
        }


def load_terms(path: str | Path | None = None) -> list[str]:
    """Canonical terms from YAML (`terms: [...]`), normalised, longest first."""
    path = Path(path or DEFAULT_TERMS)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        raw = [str(t) for t in data.get("terms") or []]
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise InputError(f"规范表述文件「{path}」无法读取或格式不对：{exc}") from None
    terms = {"".join(_norm_chars(t)[0]) for t in raw}
    return sorted((t for t in terms if len(t) > 1), key=lambda t: (-len(t), t))


def _norm_chars(text: str) -> tuple[list[str], list[int]]:
    chars, pos = [], []
    for i, ch in enumerate(text):
        if 0xFF01 <= ord(ch) <= 0xFF5E:  # full-width ASCII forms
            ch = chr(ord(ch) - 0xFEE0)
        elif not ch.isascii() and not ("\u4e00" <= ch <= "\u9fff"):
            ch = unicodedata.normalize("NFKC", ch)
        for c in ch:
            if c.isalnum():
                chars.append(c.lower())
                pos.append(i)
    return chars, pos


class Normaliser:
    """text -> (normalised string, spans): spans[i] = (start, end) of normalised char i in the text."""

    def __init__(self, terms: list[str]):
        self.terms = terms
        self.pattern = re.compile("|".join(map(re.escape, terms))) if terms else None
        self.code = {t: chr(0xE000 + i) for i, t in enumerate(terms)}

    def __call__(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        chars, pos = _norm_chars(text)
        norm = "".join(chars)
        spans = [(p, p + 1) for p in pos]
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


def is_copied(longest: int, containment: float, chars: int) -> bool:
    """The calibrated decision rule (see the module docstring)."""
    if chars < MIN_CHARS:
        return False
    return longest >= LONGEST or (containment >= CONTAINMENT and longest >= MIN_LONGEST)


class CopyIndex:
    """Winnowing fingerprints of every source sentence: sorted hashes with the sentence each came from."""

    def __init__(self, terms: list[str]):
        self.terms = terms
        self.normalise = Normaliser(terms)
        self.source_ids: list[str] = []  # doc number -> source id
        self.sentences: list[str] = []  # sentence number -> source sentence text
        self.sentence_doc: list[int] = []  # sentence number -> doc number
        self.hashes = np.zeros(0, dtype=np.uint64)  # sorted
        self.owners = np.zeros(0, dtype=np.int32)  # parallel to hashes: sentence number

    @classmethod
    def build(cls, docs, terms: list[str] | None = None) -> "CopyIndex":
        """Index (source_id, text) pairs. Example: CopyIndex.build([("a/1", "……")], load_terms())"""
        index = cls(load_terms() if terms is None else terms)
        all_h, all_o = [], []
        for source_id, text in docs:
            doc = len(index.source_ids)
            index.source_ids.append(source_id)
            spans = sentence_spans(text)
            first = len(index.sentences)
            index.sentences.extend(s for _, _, s in spans)
            index.sentence_doc.extend([doc] * len(spans))
            norm, norm_spans = index.normalise(text)
            hashes = kgram_hashes(norm)
            if not len(hashes):
                continue
            picks = winnow(hashes)
            starts = np.array([s for s, _, _ in spans])
            char_pos = np.array([norm_spans[p][0] for p in picks])
            owner = first + np.searchsorted(starts, char_pos, side="right") - 1
            all_h.append(hashes[picks])
            all_o.append(owner.astype(np.int32))
        if all_h:
            h, o = np.concatenate(all_h), np.concatenate(all_o)
            order = np.lexsort((o, h))
            h, o = h[order], o[order]
            keep = np.ones(len(h), dtype=bool)
            keep[1:] = (h[1:] != h[:-1]) | (o[1:] != o[:-1])
            index.hashes, index.owners = h[keep], o[keep]
        return index

    @classmethod
    def from_corpus(cls, corpus, terms: list[str] | None = None) -> "CopyIndex":
        return cls.build(((item.id, item.text) for item in corpus.items), terms)

    @classmethod
    def load(cls, corpus_dir: Path, cache_dir: Path, terms_path: Path | None = None) -> "CopyIndex":
        """The index of the corpus folder, from cache_dir when the corpus and terms are unchanged."""
        corpus_dir = Path(corpus_dir)
        if terms_path is None:
            own = corpus_dir / "canonical_terms.yaml"
            terms_path = own if own.exists() else DEFAULT_TERMS
        terms = load_terms(terms_path)
        key = _corpus_key(corpus_dir, terms)
        place = hashlib.sha256(str(corpus_dir.resolve()).encode()).hexdigest()[:8]  # one cache per corpus folder
        path = Path(cache_dir) / f"copyindex-{place}-{key}.pkl"
        if path.exists():
            try:
                with path.open("rb") as fh:
                    return pickle.load(fh)
            except Exception:  # a truncated or foreign cache is rebuilt, never trusted
                pass
        corpus = load_corpus(corpus_dir)
        if not corpus.items:
            raise InputError(f"语料文件夹「{corpus_dir}」里没有可用的范文条目，无法做抄袭检查。")
        index = cls.from_corpus(corpus, terms)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.glob(f"copyindex-{place}-*.pkl"):
                old.unlink(missing_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent builders never share a temp file
            with tmp.open("wb") as fh:
                pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache folder only costs a rebuild next time
        return index

    def candidates(self, norm: str) -> list[int]:
        """Source sentences sharing the most k-grams with the normalised sentence, best first."""
        q = kgram_hashes(norm)
        if not len(q) or not len(self.hashes):
            return []
        lo = np.searchsorted(self.hashes, q, side="left")
        hi = np.searchsorted(self.hashes, q, side="right")
        hits = [self.owners[a:b] for a, b in zip(lo, hi) if b > a]
        if not hits:
            return []
        owners, counts = np.unique(np.concatenate(hits), return_counts=True)
        best = np.argsort(-counts, kind="stable")[:CANDIDATES]
        return [int(owners[i]) for i in best]

    def check(self, text: str) -> list[Flag]:
        """Flag every sentence of text copied from the corpus, with offsets into text."""
        flags = []
        for position, (start, end, sentence) in enumerate(sentence_spans(text), 1):
            norm, spans = self.normalise(sentence)
            best = None
            for sid in self.candidates(norm):
                source_norm, _ = self.normalise(self.sentences[sid])
                longest, runs = compare(norm, source_norm)
                covered = sum(b - a for a, b in runs)
                score = (is_copied(longest, covered / len(norm), len(norm)), covered, longest)
                if best is None or score > best[0]:
                    best = (score, sid, longest, runs, covered)
            if best is None or not best[0][0]:
                continue
            _, sid, longest, runs, covered = best
            flags.append(Flag(
                sentence, position, start, end, self.source_ids[self.sentence_doc[sid]], self.sentences[sid],
                longest, covered / len(norm),
                [(start + spans[a][0], start + spans[b - 1][1]) for a, b in runs], covered,
            ))
        return flags

    def norm_length(self, text: str) -> int:
        return len(self.normalise(text)[0])


def _corpus_key(corpus_dir: Path, terms: list[str]) -> str:
    """Hash of every document's path and bytes under the corpus folder, the terms and the format version."""
    from .textio import DOC_SUFFIXES

    digest = hashlib.sha256(f"v{VERSION}|{K}|{W}|{'|'.join(terms)}".encode())
    for path in sorted(p for p in corpus_dir.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES | {".yaml"}):
        digest.update(path.relative_to(corpus_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]
