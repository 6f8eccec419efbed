"""Genre audit of a 原因剖析: what an office writer sees at once and the form checks do not.

Nine kinds of finding, each with a span and a one-line Chinese reason (rules in corpus/audit_rules.yaml):
unsupported (concrete claims the note does not give), remedy (prescriptions where causes belong),
defence (excuses and self-praise), echo (the prompt's own words), register (a business's words, a voice
that switches), heading (restating a problem instead of judging a cause), residue (labels and lists in
a paragraph), repeat (the same sentence twice), rootless (no thinking named behind the problem).

`unsupported` learns the genre's general vocabulary from the corpus: words used by two or more samples,
and every word of any sample except the nouns and names only one sample uses (that unit's own facts).
Without a note it is not checked. Left out: copying (copycheck.py), numbering and length (structure.py),
whether a cause is argued well, and any model call; everything is lexical and runs in milliseconds.
"""

import bisect
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.checks.auditrules import DEFAULT_RULES, WORD, resources
from pipeline.checks.copycheck import sentence_spans
from pipeline.checks.similarity import bigrams, grams, letters, longest_shared, sentence_norms, similar
from pipeline.checks.structure import NUMBER, extract_note_problems, find_sections
from pipeline.config import DEFAULT_CORPUS
from pipeline.errors import InputError
from pipeline.note.reader import Note

KINDS = ("unsupported", "remedy", "defence", "echo", "register", "heading", "residue", "repeat", "rootless")
NAMES = {"unsupported": "无据", "remedy": "整改口吻", "defence": "辩解", "echo": "提示词", "register": "口吻不符",
         "heading": "标题", "residue": "列表残留", "repeat": "重复", "rootless": "缺思想根源"}
_TITLE = re.compile(r"《[^》]{1,30}》")
_SLASH = re.compile(r"[\u4e00-\u9fff]{2,}/[\u4e00-\u9fff]{2,}")


@dataclass(frozen=True)
class Finding:
    kind: str
    text: str
    start: int  # offsets into the audited string
    end: int
    reason: str  # one Chinese line

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "start": self.start, "end": self.end, "reason": self.reason}


@dataclass
class AuditResult:
    passed: bool
    sections: list[dict] = field(default_factory=list)  # [{"number", "heading", "findings": [Finding]}]

    def findings(self) -> list[Finding]:
        return [f for s in self.sections for f in s["findings"]]

    def counts(self) -> dict[str, int]:
        found = Counter(f.kind for f in self.findings())
        return {kind: found[kind] for kind in KINDS}

    def to_dict(self) -> dict:
        return {"passed": self.passed, "counts": self.counts(), "sections": [
            {"number": s["number"], "heading": s["heading"], "findings": [f.to_dict() for f in s["findings"]]}
            for s in self.sections]}


class Auditor:
    """Audits sections of one draft against its note; build once, call `section` or `text` many times."""

    def __init__(self, corpus_dir=None, note_text: str | None = None, fail_kinds: list[str] | None = None,
                 rules_path=None, *, note: Note | None = None):
        """The note comes as written (`note_text`, read here) or parsed (`note`: its problems, and its text
        where `note_text` is not given); without either, the checks that need a note are skipped."""
        import jieba

        if note is not None and note_text is None:
            note_text = note.text
        self._cut = jieba.tokenize
        self.rules, self.rx, self.vocab, echo, self.tags, self.freq, self.terms = resources(
            str(Path(corpus_dir or DEFAULT_CORPUS)), str(Path(rules_path or DEFAULT_RULES)))
        self.note = note_text
        self.echo = echo - grams(note_text, self.rules["echo"]["min_run"]) if note_text else echo
        self.fail_kinds = list(KINDS if fail_kinds is None else fail_kinds)
        self.problems = extract_note_problems(note if note is not None else note_text) if note_text else []
        self.note_grams = bigrams(note_text) if note_text else set()
        reg = self.rules["register"]
        business_ok = bool(note_text and re.search(reg["business_units"], note_text))
        self.business = [w for w in reg["business"] if not business_ok and not (note_text and w in note_text)]
        self.voice = None if note_text is None else "我" if re.search(reg["personal_note"], note_text) else "班子"

    def section(self, heading: str, body: str, others: list[str] = ()) -> list[Finding]:
        """Audit one section; offsets relative to f"{heading}。{body}"; `others`: texts to check repeats against."""
        text = f"{heading}。{body}"
        spans = [(a, b) for a, b, _ in sentence_spans(text)]
        found = (self._unsupported(text, spans, len(heading)) + self._remedy(text, spans) + self._defence(text, spans)
                 + self._echo(text) + self._register(text, others) + self._heading(heading)
                 + self._residue(text) + self._repeat(text, spans, others) + self._rootless(text, heading))
        found = [f for f in found if not any(g.kind == f.kind and g.start <= f.start and f.end <= g.end
                                             and (g.start, g.end) != (f.start, f.end) for g in found)]
        return sorted(set(found), key=lambda f: (f.start, KINDS.index(f.kind)))  # one finding per span and kind

    def text(self, text: str) -> AuditResult:
        """Audit a whole draft, section by section (numbered items; the whole text when there are none)."""
        _, sections, _ = find_sections(text, ["paren", "shi", "dun", "arabic"])
        starts = [0] + [m.end() for m in re.finditer("\n", text)]
        parts = []  # (number, heading, heading offset, body, body offset)
        for s in sections:
            h = text.find(s.heading, starts[s.line - 1]) if s.heading else starts[s.line - 1]
            b = text.find(s.body, h + len(s.heading)) if s.body else h + len(s.heading)
            parts.append((s.number, s.heading, h, s.body, b))
        if not parts:
            body = text.strip()
            parts.append((0, "", 0, body, text.find(body)))
        out, seen = [], []
        for number, heading, h, body, b in parts:
            findings = []
            for f in self.section(heading, body, seen):
                start, end = (h + p if p <= len(heading) else b + p - len(heading) - 1 for p in (f.start, f.end))
                findings.append(Finding(f.kind, text[start:end], start, end, f.reason))
            out.append({"number": number, "heading": heading, "findings": findings})
            seen.append(f"{heading}。{body}")  # later sections are compared with earlier ones only
        passed = not any(f.kind in self.fail_kinds for s in out for f in s["findings"])
        return AuditResult(passed, out)

    # --- one method per kind -------------------------------------------------------------------------
    def _claim(self, word: str) -> bool:
        """A word naming a thing or an event that neither the note nor the genre's vocabulary supplies."""
        r = self.rules["unsupported"]
        if word in self.vocab or word in self.note or self.rx["abstract"].search(word):
            return False
        tag = self.tags.get(word)
        if self.rx["function"].search(word):  # a mis-cut phrase (条看, 在读, 检查和), not a name (王某, 幸福里)
            core = word.strip(r["function_chars"])
            if tag is None or len(word) == 2 or core in self.vocab or core in self.note:
                return False
        if tag is None:
            return True
        if tag in r["verb_tags"]:
            return self.freq.get(word, 0) < r["max_verb_freq"]
        if tag not in r["noun_tags"]:
            return False
        ok = lambda part: len(part) > 1 and (part in self.vocab or part in self.note)  # noqa: E731
        return not any(ok(word[:k]) and ok(word[k:]) for k in range(2, len(word) - 1))  # 下属单位 = 下属 + 单位

    def _unsupported(self, text, spans, heading_end: int) -> list[Finding]:
        if self.note is None:
            return []
        r, note, out = self.rules["unsupported"], self.note, []
        words = [[] for _ in spans]  # sentence -> its words
        ends = [b for _, b in spans]
        for word, s, _ in self._cut(text):
            k = bisect.bisect_right(ends, s)
            if k < len(spans) and WORD.fullmatch(word):
                words[k].append(word)
        roots = self.rules["rootless"]["words"]
        for (a, b), sentence_words in zip(spans, words):
            if a < heading_end:  # the heading is a judgement; figures in it are the heading check's
                continue
            sentence = text[a:b]
            claims = [w for w in dict.fromkeys(sentence_words) if self._claim(w) and w not in self.business]
            score = 0
            for m in NUMBER.findall(sentence) + _TITLE.findall(sentence):
                if m not in note and m not in claims:
                    claims.append(m)
                    score += r["figure_weight"] - 1
            claims += [w for w in r["event_markers"] if w in sentence and w not in note and w not in claims]
            score += sum(r["verb_weight"] if self.tags.get(w) in r["verb_tags"] else 1 for w in claims)
            # a lone new word in a sentence that names no root and shares nothing with the note: a new topic
            rooted = any(w in sentence for w in roots)
            off_note = (not rooted and self.rx["failure"].search(sentence)
                        and len(bigrams(sentence) & self.note_grams) < r["min_shared"])
            nouns = [w for w in claims if self.tags.get(w, "n") in r["noun_tags"] or w in r["event_markers"]]
            if claims and (score >= r["min_score_root" if rooted else "min_score"] or (off_note and nouns)):
                out.append(Finding("unsupported", sentence, a, b,
                                   f"情况说明里没有这些内容：{'、'.join(claims[:6])}。只写说明给出的事实，不要编造事件、人物和细节。"))
        return out

    def _remedy(self, text, spans) -> list[Finding]:
        rx, out = self.rx, []
        for a, b in spans:
            sentence = text[a:b]
            clauses = [sentence] + [c for c in re.split(r"[，,]", sentence)[1:] if rx["connective"].match(c)]
            if any(rx["opening"].match(c) for c in clauses) or any(p.search(sentence) for p in rx["anywhere"]):
                out.append(Finding("remedy", sentence, a, b, "这是整改措施的口吻（要、需要、必须、如果……就），原因剖析应讲问题为什么产生。"))
        return out

    def _defence(self, text, spans) -> list[Finding]:
        out = []
        for a, b in spans:
            sentence = text[a:b]
            m = next((m for p in self.rx["defence"] if (m := p.search(sentence))), None)
            if (not m and self.rx["self"].match(sentence) and self.rx["praise"].search(sentence)
                    and not self.rx["shortfall"].search(sentence) and not self.rx["opening"].search(sentence)):
                m = re.match(r".*", sentence)  # the unit speaks of itself and names no shortfall: it praises itself
            if m:
                out.append(Finding("defence", m.group(), a + m.start(), a + m.end(),
                                   "自我剖析中为班子辩解或表功，应直面问题、从主观上找原因。"))
        return out

    def _echo(self, text) -> list[Finding]:
        e, out = self.rules["echo"], []
        norm, pos = letters(text)
        n, hits = e["min_run"], []
        for i in range(len(norm) - n + 1):
            if norm[i : i + n] in self.echo:
                if hits and i <= hits[-1][1]:
                    hits[-1][1] = i + n
                else:
                    hits.append([i, i + n])
        spans = [(pos[i], pos[j - 1] + 1) for i, j in hits]
        spans += [m.span() for w in e["literals"] for m in re.finditer(re.escape(w), text)]
        spans += [m.span() for m in _SLASH.finditer(text)]
        for a, b in sorted(set(spans)):
            if not any(x <= a and b <= y and (x, y) != (a, b) for x, y in spans):
                out.append(Finding("echo", text[a:b], a, b, "这是写作提示或模板里的话，不是材料本身的内容，应删去。"))
        return out

    def _register(self, text, others) -> list[Finding]:
        out = []
        for m in self.rx["business"].finditer(text) if self.business else ():
            if m.group() in self.business:
                out.append(Finding("register", m.group(), m.start(), m.end(),
                                   f"“{m.group()}”是企业用语，党政机关的材料不这样说（情况说明里也没有）。"))
        voice = self.voice
        if voice is None:  # no note: the draft's majority voice
            whole = text + "".join(others)
            voice = "我" if len(self.rx["individual"].findall(whole)) > len(self.rx["collective"].findall(whole)) else "班子"
        wrong = self.rx["individual"] if voice == "班子" else re.compile(r"我们(?!党)")
        quoted = [q.span() for q in re.finditer(r"“[^“”]*”", text)]  # someone's words: 群众说“你好我好”
        for m in wrong.finditer(text):
            if text[m.start() : m.start() + 3] != "我是谁" and not any(a < m.start() < b for a, b in quoted):
                out.append(Finding("register", m.group(), m.start(), m.end(),
                                   f"口吻前后不一：全文以“{'班子、我们' if voice == '班子' else '我'}”自称，这里却用了“{m.group()}”。"))
        return out

    def _heading(self, heading) -> list[Finding]:
        h, r = heading.rstrip("。；;，, "), self.rules["heading"]
        if not h:
            return []
        bare = h
        for term in self.terms:  # 一岗双责, “两个维护” carry no figure
            bare = bare.replace(term, "")
        why = None
        run = r.get("restate_run", 6)
        if self.rx["endings"].search(h):
            why = "标题以“问题”“原因剖析”之类结尾，只是在点题；标题应是对原因的判断，如“宗旨意识有所淡化”。"
        elif r.get("inside") and re.search(r["inside"], h):
            why = "标题在分析或叙述（“原因”“问题”“导致”之类），不是对原因的判断，如“宗旨意识有所淡化”。"
        elif longest_shared(lead := re.split(r"[，,；;]", bare)[0], self.problems) >= max(run, len(lead) / 2):
            why = "标题大半是情况说明中的问题原话，没有判断原因。"
        elif not self.rx["shortfall"].search(h) and not self.rx["topic"].search(h):
            why = "标题没有指出不足，读来像表态或成绩；标题应是对原因的判断，如“宗旨意识有所淡化”。"
        elif r.get("generic") and len(re.sub(r["generic"], "", h)) < 2:
            why = "标题太笼统，只说思想认识有偏差，没说是哪方面的认识，如“宗旨意识有所淡化”。"
        elif self.rx["figure"].search(bare):
            why = "标题里有数字或事实，那是问题本身；标题应是对原因的判断。"
        else:
            grams = bigrams(h)
            root = any(w in h for w in self.rules["rootless"]["words"])
            for p in self.problems:
                share = len(grams & bigrams(p)) / len(grams) if grams else 0
                if share >= r["judged"] or (share >= r["restate"] and not root):
                    why = f"标题复述了情况说明中的问题“{p[:20]}”，没有判断原因。"
                    break
        return [Finding("heading", h, 0, len(h), why)] if why else []

    def _residue(self, text) -> list[Finding]:
        out = []
        for p in self.rx["residue"]:
            for m in p.finditer(text):
                a, b = m.span()
                while a < b and text[a] in "。；！？：:，,\n \t":
                    a += 1
                out.append(Finding("residue", text[a:b], a, b, "段落里出现了标签或列表结构（“以下几个方面：”“X：”“首先……其次”），应写成连贯的段落。"))
        return out

    def _repeat(self, text, spans, others) -> list[Finding]:
        r, out = self.rules["repeat"], []
        # (normalised sentence, is a heading): a body restating its heading's words is the genre, not a repeat
        earlier = [(sentence, k == 0) for other in others for k, sentence in enumerate(sentence_norms(other))]
        for k, (a, b) in enumerate(spans):
            sentence = text[a:b]
            norm = letters(sentence)[0]
            if len(norm) >= r["min_chars"]:
                if any(similar(norm, e, r, contain=not (head or k == 0)) for e, head in earlier):
                    out.append(Finding("repeat", sentence, a, b, "这句话与前文重复（或几乎相同），应删去或合并。"))
                earlier.append((norm, k == 0))
        return out + self._repeated_clauses(text, spans)

    def _repeated_clauses(self, text, spans) -> list[Finding]:
        """A clause that says again what an earlier clause of the section said (a shared run of `clause_run`
        characters, canonical terms aside): a small model restates the problem as its own cause."""
        run, out, seen = self.rules["repeat"].get("clause_run", 8), [], []
        for a, b in spans[1:] if len(spans) > 1 else []:  # the heading's words may come back in the body
            pos = a
            for clause in re.split(r"(?<=[，,；;、])", text[a:b]):
                bare = clause
                for term in self.terms:
                    bare = bare.replace(term, "")
                bare = re.sub(r"\W", "", bare)
                if len(bare) >= run and longest_shared(bare, seen) >= run:
                    out.append(Finding("repeat", clause, pos, pos + len(clause), "这里把前面说过的话又说了一遍，应删去或换成原因。"))
                seen.append(bare)
                pos += len(clause)
        return out

    def _rootless(self, text, heading) -> list[Finding]:
        if any(w in text for w in self.rules["rootless"]["words"]):
            return []
        end = len(heading) if heading else len(text)
        return [Finding("rootless", text[:end], 0, end, "整条没有点出问题背后的思想根源（思想、认识、意识、党性、宗旨、观念……）。")]


def audit_text(text: str, *, corpus_dir=None, note_text: str | None = None, schema: dict | None = None,
               note: Note | None = None) -> AuditResult:
    """Audit a whole draft; which kinds fail it comes from the schema's `audit.fail_kinds` (all when absent).
    The note as written, parsed, or both (see Auditor)."""
    audit = (schema or {}).get("audit") or {}
    fail = audit.get("fail_kinds")
    unknown = [k for k in fail or [] if k not in KINDS]
    if unknown:
        raise InputError(f"结构规则文件中 audit.fail_kinds 含未知类型：{'、'.join(unknown)}（可用：{'、'.join(KINDS)}）。")
    rules = audit.get("rules_file")  # relative to corpus/, like the schema's other files
    return Auditor(corpus_dir, note_text, fail, DEFAULT_RULES.parent / rules if rules else None, note=note).text(text)
