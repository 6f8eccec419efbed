"""Copy detection against the corpus: winnowed character k-grams, then exact comparison per sentence and
per window of neighbouring sentences.

Text is normalised (textmatch.py: full/half width, case and punctuation folded; each canonical formulation
from corpus/canonical_terms.yaml and each title in 《》 one private-use character, so a run lying inside such a
term is never long). Source sentences are fingerprinted by winnowing over K-grams with window W: every shared
run of at least K + W - 1 = 9 characters shares a fingerprint.

Two rules, either flags a sentence of the checked text (thresholds calibrated by evals/bench_check.py --labelled):
- sentence rule: the sentence's best candidate source sentences are compared exactly: longest common run and
  containment (share of its characters covered by runs of at least MIN_RUN shared with one source sentence).
  Copied when the longest run is at least LONGEST (13, the common rule of thumb) or containment reaches
  CONTAINMENT with a run of at least MIN_LONGEST. Sentences under MIN_CHARS characters are left to the window rule.
- window rule: the sentence with PAD characters of context on each side is aligned with its candidate source
  sentences and their neighbours. Evidence is a segment: an exact shared run of at least FRAGMENT (9)
  characters, or an edit-tolerant chain of exact blocks of at least MIN_RUN characters, consecutive blocks at
  most GAP characters apart on both sides (a changed or inserted word), the chain's blocks covering at least
  IDENTITY of its span on both sides. The sentence is copied when segments cover at least CONTAINMENT of it
  and either one segment touching it is long (its blocks cover LONGEST characters: a copied passage chopped
  into short clauses, or one with a character changed every 8-9) or at least two disjoint segments touch it or
  its neighbouring sentences (a patchwork of fragments from several samples, within a sentence or across short ones).

Quotations (quotes.py): words attributed to 习近平总书记 (inside quotation marks after 强调/指出/要求/提出…, or
the rest of the sentence after "指出，") that a sample also quotes are masked, with their attribution, before
matching and reported as `Quotation`s, never as copying. Words a sample does not quote count as copying
however they are attributed.

Left out: semantic paraphrase detection (no embeddings or models here) and any judgement of the draft's
structure (see structure.py).
"""

import contextlib
import hashlib
import os
import pickle
import sys
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.corpus.samples import load_corpus
from pipeline.errors import InputError
from pipeline.checks.quotes import attributed_spans, quote_spans
from pipeline.checks.textmatch import (DEFAULT_TERMS, K, MIN_RUN, W, Normaliser, blocks, chains, compare, gram_positions,  # noqa: F401
                        kgram_hashes, load_terms, merge_intervals, norm_chars, sentence_spans, winnow)

LONGEST = 13  # a shared run this long marks a sentence as copied
CONTAINMENT = 0.5  # ... or this share of the sentence covered by shared runs,
MIN_LONGEST = 10  # ... together with at least one run this long
MIN_CHARS = 10  # the sentence rule skips sentences shorter than this (normalised): headings, stock phrases
CANDIDATES = 3  # source sentences compared exactly per draft sentence
PAD = 24  # window rule: normalised characters of context taken on each side of a sentence
WINDOW_CANDIDATES = 6  # window rule: source sentences (each with its neighbours) aligned per draft sentence
FRAGMENT = 9  # window rule: the shortest segment that counts as evidence
GAP = 3  # window rule: most characters between two blocks of a chain, on either side
IDENTITY = 0.75  # window rule: share of a chain's span its blocks cover, on both sides
QUOTE_SHARE = 0.8  # a quotation is a sample's when runs shared with one quoted passage cover this share of it
VERSION = 3  # bump when the index's format changes, so old caches are rebuilt
_MASK = "\U00100000"  # stands for each character of a quotation: no source has it, so it never matches


@dataclass
class Flag:
    """One copied sentence of the checked text; offsets are character offsets into that text."""

    sentence: str
    position: int  # 1-based sentence number in the text
    start: int
    end: int
    source_id: str  # corpus item id, e.g. "seed-2021-dangshi/04/3"
    source_text: str  # the source sentence
    longest: int  # longest shared run (window rule: most characters in one segment), normalised
    containment: float
    runs: list[tuple[int, int]] = field(default_factory=list)  # copied runs, (start, end) offsets into the text
    covered: int = 0  # normalised characters covered by the runs
    rule: str = "sentence"  # "sentence" | "window" (see the module docstring)
    sources: list[str] = field(default_factory=list)  # every corpus item the runs came from, main one first

    def to_dict(self) -> dict:
        return {
            "sentence": self.sentence, "position": self.position, "start": self.start, "end": self.end,
            "source_id": self.source_id, "source_text": self.source_text, "longest": self.longest,
            "containment": round(self.containment, 3), "runs": [list(r) for r in self.runs],
            "rule": self.rule, "sources": list(self.sources),
        }


@dataclass
class Quotation:
    """Words of 习近平总书记 quoted in the checked text that a sample quotes too: not copying."""

    text: str  # the quoted words, without quotation marks
    start: int  # offsets into the checked text
    end: int
    source_id: str  # corpus item that quotes the same words
    source_text: str  # its sentence

    def to_dict(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end, "source_id": self.source_id,
                "source_text": self.source_text}


@dataclass
class CopyScan:
    """What one check found: copied sentences, and quotations that are not copying."""

    copied: list[Flag] = field(default_factory=list)
    quotations: list[Quotation] = field(default_factory=list)


def is_copied(longest: int, containment: float, chars: int) -> bool:
    """The calibrated decision rule (see the module docstring)."""
    if chars < MIN_CHARS:
        return False
    return longest >= LONGEST or (containment >= CONTAINMENT and longest >= MIN_LONGEST)


def _top(pos: np.ndarray, owner: np.ndarray, a: int, b: int, n: int) -> list[int]:
    """The n owners with most k-gram hits at positions a <= p < b, most first (ties: lower sentence number)."""
    i0, i1 = np.searchsorted(pos, a, side="left"), np.searchsorted(pos, b, side="left")
    if i1 <= i0:
        return []
    owners, counts = np.unique(owner[i0:i1], return_counts=True)
    return [int(owners[i]) for i in np.argsort(-counts, kind="stable")[:n]]


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
        self.quotes: list[tuple[int, str]] = []  # (sentence number, words normalised without terms) quoted
        self.quote_hashes = np.zeros(0, dtype=np.uint64)  # sorted hashes of the quotes' MIN_RUN-grams
        self.quote_owners = np.zeros(0, dtype=np.int32)  # parallel: quote number
        self._normed: dict[int, str] = {}  # sentence number -> normalised sentence, filled by checks

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_normed": {}}  # the cache is never pickled

    def _source(self, sid: int) -> str:
        """A source sentence, normalised (cached: the same candidates come back check after check)."""
        norm = self._normed.get(sid)
        if norm is None:  # (a local: another thread's clear() cannot lose it)
            if len(self._normed) > 50_000:
                self._normed.clear()
            norm = self._normed[sid] = self.normalise(self.sentences[sid])[0]
        return norm

    @classmethod
    def build(cls, docs, terms: list[str] | None = None) -> "CopyIndex":
        """Index (source_id, text) pairs. Example: CopyIndex.build([("a/1", "……")], load_terms())"""
        index = cls(load_terms() if terms is None else terms)
        all_h, all_o, quote_grams = [], [], []
        for source_id, text in docs:
            doc = len(index.source_ids)
            index.source_ids.append(source_id)
            spans = sentence_spans(text)
            first = len(index.sentences)
            index.sentences.extend(s for _, _, s in spans)
            index.sentence_doc.extend([doc] * len(spans))
            norm, norm_spans = index.normalise(text)
            index._add_quotes(text, [s for s, _, _ in spans], first, quote_grams)
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
        if quote_grams:
            h, o = np.concatenate([h for h, _ in quote_grams]), np.concatenate([o for _, o in quote_grams])
            order = np.argsort(h, kind="stable")
            index.quote_hashes, index.quote_owners = h[order], o[order]
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
                    cached = pickle.load(fh)
                if isinstance(cached, cls):
                    return cached
            except Exception:  # a truncated or foreign cache is rebuilt, never trusted
                pass
            aside = path.with_name(path.name + ".broken")  # named and kept for inspection (issue 26), then rebuilt
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            print(f"提示：查重索引缓存「{path}」已损坏，已移到「{aside}」并重建。", file=sys.stderr)
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

    def _add_quotes(self, text: str, sentence_starts: list[int], first: int, grams: list) -> None:
        """Remember every passage the source quotes (in quotation marks, or attributed to 习近平总书记);
        grams collects (hashes, quote numbers) for quote_hashes."""
        for qa, qb in quote_spans(text, attributed=False):
            words = "".join(norm_chars(text[qa:qb])[0])  # without terms: a quoted slogan may be one
            if len(words) >= MIN_RUN:
                hashes = np.unique(kgram_hashes(words, MIN_RUN))
                grams.append((hashes, np.full(len(hashes), len(self.quotes), dtype=np.int32)))
                self.quotes.append((first + bisect_right(sentence_starts, qa) - 1, words))

    def quoted_by(self, words: str) -> int | None:
        """The source sentence quoting these words (normalised without terms) when runs shared with one
        quoted passage cover QUOTE_SHARE of them, or None."""
        q = kgram_hashes(words, MIN_RUN)
        lo = np.searchsorted(self.quote_hashes, q, side="left")
        hi = np.searchsorted(self.quote_hashes, q, side="right")
        hits = [self.quote_owners[a:b] for a, b in zip(lo, hi) if b > a]
        if not hits:
            return None
        numbers, counts = np.unique(np.concatenate(hits), return_counts=True)
        for number in numbers[np.argsort(-counts, kind="stable")[:CANDIDATES]]:
            sid, quoted = self.quotes[int(number)]
            _, runs = compare(words, quoted)
            if sum(b - a for a, b in runs) >= QUOTE_SHARE * len(words):
                return sid
        return None

    def candidates(self, norm: str) -> list[int]:
        """Source sentences sharing the most k-grams with the normalised sentence, best first."""
        pos, owner = self._hits(norm)
        return _top(pos, owner, 0, len(norm), CANDIDATES)

    def _hits(self, norm: str) -> tuple[np.ndarray, np.ndarray]:
        """(k-gram position, source sentence) of every fingerprint of the index found in norm, by position."""
        q = kgram_hashes(norm)
        if not len(q) or not len(self.hashes):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
        lo = np.searchsorted(self.hashes, q, side="left")
        counts = np.searchsorted(self.hashes, q, side="right") - lo
        pos = np.repeat(np.arange(len(q)), counts)
        shift = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        return pos, self.owners[np.arange(len(pos)) + shift]

    def _window(self, sid: int, cache: dict) -> tuple[str, dict[str, list[int]]]:
        """A source sentence with its neighbours in the same document, normalised, and its MIN_RUN-grams."""
        if sid not in cache:
            doc = self.sentence_doc[sid]
            lo = sid - 1 if sid and self.sentence_doc[sid - 1] == doc else sid
            hi = sid + 1 if sid + 1 < len(self.sentences) and self.sentence_doc[sid + 1] == doc else sid
            norm = "".join(self._source(n) for n in range(lo, hi + 1))
            cache[sid] = norm, gram_positions(norm)
        return cache[sid]

    def check(self, text: str) -> list[Flag]:
        """Flag every sentence of text copied from the corpus, with offsets into text (quotations excluded)."""
        return self.scan(text).copied

    def quotations(self, text: str) -> list[Quotation]:
        """Words of 习近平总书记 quoted in text that a sample quotes too (reported, not counted as copying)."""
        return self.scan(text).quotations

    def scan(self, text: str) -> CopyScan:
        """Copied sentences (sentence rule, then window rule) and quotations of the text."""
        sents = sentence_spans(text)
        norm, spans = self.normalise(text)
        if not sents or not norm:
            return CopyScan()
        starts = [a for a, _ in spans]
        quotations = []
        for lead, qa, qb in attributed_spans(text):
            words = "".join(norm_chars(text[qa:qb])[0])
            sid = self.quoted_by(words) if len(words) >= MIN_RUN else None
            if sid is not None:  # the words and their attribution ("习近平总书记强调") are masked
                a, b = bisect_left(starts, lead), bisect_left(starts, qb)
                norm = norm[:a] + _MASK * (b - a) + norm[b:]
                quotations.append(Quotation(text[qa:qb], qa, qb, self.source_ids[self.sentence_doc[sid]],
                                            self.sentences[sid]))
        ranges = [(bisect_left(starts, a), bisect_left(starts, b)) for a, b, _ in sents]
        pos, owner = self._hits(norm)
        flags: dict[int, Flag] = {}
        own = [b - a - norm.count(_MASK, a, b) for a, b in ranges]  # characters outside quotations
        for k, ((start, end, sentence), (a, b)) in enumerate(zip(sents, ranges)):
            best = None
            for sid in _top(pos, owner, a, b - K + 1, CANDIDATES) if own[k] > 0 else ():
                longest, runs = compare(norm[a:b], self._source(sid))
                covered = sum(y - x for x, y in runs)
                score = (is_copied(longest, covered / own[k], own[k]), covered, longest)
                if best is None or score > best[0]:
                    best = (score, sid, longest, runs, covered)
            if best is not None and best[0][0]:
                _, sid, longest, runs, covered = best
                source_id = self.source_ids[self.sentence_doc[sid]]
                flags[k] = Flag(sentence, k + 1, start, end, source_id, self.sentences[sid], longest,
                                covered / own[k], [(spans[a + x][0], spans[a + y - 1][1]) for x, y in runs],
                                covered, "sentence", [source_id])
        touching = self._window_evidence(norm, ranges, pos, owner)
        for k, segs in touching.items():
            if k not in flags:
                around = touching.get(k - 1, []) + segs + touching.get(k + 1, [])
                flags[k] = self._window_flag(k, sents[k], ranges[k], own[k], segs, around, spans)
        return CopyScan([flags[k] for k in sorted(flags) if flags[k]], quotations)

    def _window_evidence(self, norm: str, ranges, pos, owner) -> dict[int, list[tuple[int, int, int, int]]]:
        """Segments (start, end, matched, source sentence) touching each sentence, by sentence number."""
        wanted: dict[int, list[tuple[int, int]]] = {}  # source sentence -> draft windows to align it with
        for a, b in ranges:
            wa, wb = max(0, a - PAD), min(len(norm), b + PAD)
            for sid in _top(pos, owner, wa, wb - K + 1, WINDOW_CANDIDATES):
                wanted.setdefault(sid, []).append((wa, wb))
        segs, cache = [], {}
        for sid, windows in wanted.items():
            source, grams = self._window(sid, cache)
            for wa, wb in merge_intervals(windows):
                found = chains(blocks(norm[wa:wb], source, grams), GAP, IDENTITY, FRAGMENT)
                segs += [(wa + r0, wa + r1, m, sid) for r0, r1, m in found]
        touching: dict[int, list[tuple[int, int, int, int]]] = {}
        firsts = [a for a, _ in ranges]
        for g in sorted(segs):
            for k in range(max(bisect_right(firsts, g[0]) - 1, 0), bisect_left(firsts, g[1])):
                a, b = ranges[k]
                if min(g[1], b) - max(g[0], a) >= min(MIN_RUN, b - a) > 0:  # overlaps it, not just grazes
                    touching.setdefault(k, []).append(g)
        return touching

    def _window_flag(self, k: int, sent, rng, own: int, segs, around, spans) -> Flag | None:
        """The window rule on one sentence of `own` characters outside quotations (module docstring), or None.
        segs: the segments touching it; around: those touching it or a neighbouring sentence."""
        (start, end, sentence), (a, b) = sent, rng
        inside = merge_intervals([(max(x, a), min(y, b)) for x, y, _, _ in segs])
        covered = sum(y - x for x, y in inside)
        disjoint, last = 0, -1
        for x, y, _, _ in sorted(set(around), key=lambda g: g[1]):  # most non-overlapping segments, greedily
            if x >= last:
                disjoint, last = disjoint + 1, y
        longest = max(m for _, _, m, _ in segs)
        if own <= 0 or covered < CONTAINMENT * own or (longest < LONGEST and disjoint < 2):
            return None
        share: dict[int, int] = {}  # source sentence -> characters of this sentence it covers
        for x, y, _, sid in segs:
            share[sid] = share.get(sid, 0) + min(y, b) - max(x, a)
        order = sorted(share, key=lambda sid: -share[sid])
        sources = list(dict.fromkeys(self.source_ids[self.sentence_doc[sid]] for sid in order))
        return Flag(sentence, k + 1, start, end, sources[0], self.sentences[order[0]], longest, covered / own,
                    [(spans[x][0], spans[y - 1][1]) for x, y in inside], covered, "window", sources)

    def norm_length(self, text: str) -> int:
        return len(self.normalise(text)[0])


def _corpus_key(corpus_dir: Path, terms: list[str]) -> str:
    """Hash of every document's path and bytes under the corpus folder, the terms and the format version."""
    from pipeline.textio import DOC_SUFFIXES

    digest = hashlib.sha256(f"v{VERSION}|{K}|{W}|{'|'.join(terms)}".encode())
    for path in sorted(p for p in corpus_dir.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES | {".yaml"}):
        digest.update(path.relative_to(corpus_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]
