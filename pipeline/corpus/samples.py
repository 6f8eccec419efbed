"""Parse sample documents into samples and numbered items, tag items with cause dimensions, chunk them.

A corpus is a folder of .txt/.md/.docx files. A file may hold several samples separated by lines that
are only a number (`01`, `02` …, as in the seed); otherwise the file is one sample. Inside a sample the
numbered items (`（一）…`, `一是…`, `一、…`, `1．…`) start at the beginning of a line; the first style
found is the sample's style and only it splits items, so a nested list stays inside its item's body.

Left out: embedding and storage (see embed.py, store.py). Files that cannot be used are reported in
`Corpus.problems`, not raised, so one broken file does not stop the rest.
"""

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import DEFAULT_CORPUS, PROJECT_ROOT
from pipeline.errors import InputError
from pipeline.textio import DOC_SUFFIXES, read_document, read_text

DEFAULT_DIMENSIONS = PROJECT_ROOT / "corpus" / "dimensions.yaml"

CN_NUM = "一二三四五六七八九十"
# style name -> regex matching an item marker at the start of a line; group 1 is the number
ITEM_STYLES = {
    "paren": re.compile(rf"^\s*[（(]([{CN_NUM}]+)[）)]\s*"),
    "shi": re.compile(rf"^\s*([{CN_NUM}]+)是\s*"),
    "dun": re.compile(rf"^\s*([{CN_NUM}]+)、\s*"),
    "arabic": re.compile(r"^\s*(\d{1,2})\s*[．.、]\s*(?!\d)"),
}
SAMPLE_MARKER = re.compile(r"^\s*(\d{1,3})\s*$")
SENTENCE_END = re.compile(r"[。！？!?；;]")
CHUNK_CHARS = 600  # an item longer than this is split at sentence ends into parts of about this size
SUB_MARK = "#s"  # sub-chunk ids: "<item id>#s<k>"
SUB_WINDOW = 2  # body sentences per sub-chunk


@dataclass(frozen=True)
class Item:
    id: str  # "<sample id>/<n>", e.g. "seed-2021-dangshi/04/3"; "<n>-2" for a number's second use
    sample_id: str
    number: int
    style: str
    heading: str
    body: str
    dimensions: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.heading}。{self.body}" if self.body else self.heading


@dataclass
class Sample:
    id: str
    source: str  # file path relative to the corpus folder
    preamble: str  # text before the first item (a title or lead-in), may be empty
    items: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    id: str  # item id, plus "#p<k>" when the item was split, or "#s<k>" for a sentence sub-chunk
    item_id: str
    sample_id: str
    heading: str
    text: str
    dimensions: tuple[str, ...]

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.heading}\n{self.text}\n{'|'.join(self.dimensions)}".encode()).hexdigest()[:16]


@dataclass
class Corpus:
    root: Path
    files: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # Chinese messages, one per unusable file

    @property
    def items(self) -> list[Item]:
        return [item for sample in self.samples for item in sample.items]

    def chunks(self) -> list[Chunk]:
        """Every item's chunks (whole or parts), then its sentence sub-chunks (see `sub_chunks`)."""
        return [chunk for item in self.items for chunk in chunk_item(item) + sub_chunks(item)]


def cn_to_int(numeral: str) -> int:
    """Convert a Chinese numeral up to 99 to int. Example: cn_to_int("十二") == 12"""
    if numeral.isdigit():
        return int(numeral)
    digits = {ch: i + 1 for i, ch in enumerate(CN_NUM[:9])}
    if "十" not in numeral:
        return digits[numeral]
    tens, _, ones = numeral.partition("十")
    return (digits[tens] if tens else 1) * 10 + (digits[ones] if ones else 0)


def split_samples(text: str) -> list[tuple[str, str]]:
    """Split a file's text into (number, text) at lines that are only a number; one sample if none.

    Text before the first marker (a file title) is dropped when markers exist.
    """
    lines = text.split("\n")
    marks = [i for i, line in enumerate(lines) if SAMPLE_MARKER.match(line)]
    if len(marks) < 2:
        return [("", text)]
    bounds = marks + [len(lines)]
    return [
        (SAMPLE_MARKER.match(lines[start]).group(1).zfill(2), "\n".join(lines[start + 1 : end]))
        for start, end in zip(bounds, bounds[1:])
    ]


def line_style(line: str) -> str | None:
    """The item style a line starts with, or None. Example: line_style("（二）甲。") == "paren"."""
    return next((style for style, pattern in ITEM_STYLES.items() if pattern.match(line)), None)


def detect_style(text: str) -> str | None:
    """Return the item style of the first numbered line, or None."""
    return next((style for line in text.split("\n") if (style := line_style(line))), None)


def split_heading(text: str) -> tuple[str, str]:
    """Split an item's text into its heading sentence and body. Example: "甲方面。乙。" -> ("甲方面", "乙。")"""
    match = SENTENCE_END.search(text)
    if not match or match.end() >= len(text.rstrip()):
        return text.strip().rstrip("。；;"), ""
    return text[: match.start()].strip(), text[match.end() :].strip()


def parse_items(text: str, sample_id: str) -> tuple[str, list[Item]]:
    """Return (preamble, items) of one sample's text."""
    style = detect_style(text)
    if style is None:
        return text.strip(), []
    pattern = ITEM_STYLES[style]
    preamble: list[str] = []
    blocks: list[tuple[int, list[str]]] = []  # (number, lines)
    for line in text.split("\n"):
        match = pattern.match(line)
        if match:
            blocks.append((cn_to_int(match.group(1)), [line[match.end() :]]))
        elif blocks:
            blocks[-1][1].append(line)
        else:
            preamble.append(line)
    items, seen = [], {}  # number -> times seen in this sample
    for number, lines in blocks:
        heading, body = split_heading("\n".join(lines).strip())
        # a number that repeats (a second list, a typo) still names its own item: "<sample>/2", "<sample>/2-2"
        seen[number] = seen.get(number, 0) + 1
        suffix = f"-{seen[number]}" if seen[number] > 1 else ""
        items.append(Item(f"{sample_id}/{number}{suffix}", sample_id, number, style, heading, body))
    return "\n".join(preamble).strip(), items


class DimensionTagger:
    """Tag text with cause dimensions by keyword counts weighted by keyword length, from an editable YAML file."""

    def __init__(self, path: str | Path = DEFAULT_DIMENSIONS):
        path = Path(path)
        try:
            data = yaml.safe_load(read_text(path))
            self.dimensions: dict[str, list[str]] = {str(k): [str(w) for w in v] for k, v in data["dimensions"].items()}
            self.min_score = int(data.get("min_score", 3))
            self.always: list[str] = [str(d) for d in data.get("always") or [] if d in self.dimensions]
            # dimension -> the thinking behind its problems (思想根源) a draft's links may name
            self.roots: dict[str, list[str]] = {str(k): [str(r) for r in v] for k, v in (data.get("roots") or {}).items()}
            # root -> the problem words that call for it (see pipeline/roots.py)
            self.cues: dict[str, list[str]] = {str(k): [str(w) for w in v] for k, v in (data.get("cues") or {}).items()}
        except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputError(f"维度文件「{path}」无法读取或格式不对：{exc}") from None

    @property
    def names(self) -> list[str]:
        return list(self.dimensions)

    def scores(self, heading: str, body: str = "") -> dict[str, int]:
        return {
            name: sum(len(w) * (3 * heading.count(w) + body.count(w)) for w in words)  # longer = more specific
            for name, words in self.dimensions.items()
        }

    def tag(self, heading: str, body: str = "") -> tuple[str, ...]:
        """Every dimension scoring at least min_score, best first; always at least the best one."""
        scores = self.scores(heading, body)
        ranked = sorted(scores, key=lambda name: -scores[name])
        chosen = [name for name in ranked if scores[name] >= self.min_score]
        return tuple(chosen or ranked[:1])


def chunk_item(item: Item, size: int = CHUNK_CHARS) -> list[Chunk]:
    """One chunk per item; an item longer than `size` is cut at sentence ends, each part keeping the heading."""
    body_parts = [item.body] if len(item.text) <= size else _pack_sentences(item.body, size)
    if len(body_parts) == 1:
        return [Chunk(item.id, item.id, item.sample_id, item.heading, item.text, item.dimensions)]
    return [
        Chunk(f"{item.id}#p{k}", item.id, item.sample_id, item.heading, f"{item.heading}。{part}", item.dimensions)
        for k, part in enumerate(body_parts, 1)
    ]


def sub_chunks(item: Item, window: int = SUB_WINDOW) -> list[Chunk]:
    """Sentence-level sub-chunks that point to their item: the heading alone, then every `window` adjacent body
    sentences (stride 1). Retrieval matches them and returns the item; they are never shown on their own.

    A short paraphrase of a problem often matches one or two sentences of an item better than the whole item,
    whose vector averages over every angle it covers (measured in evals/bench_retrieval.py).
    Example: an item "甲。一。二。三。" gets "…#s1" "甲", "…#s2" "一。二。", "…#s3" "二。三。".
    """
    if not item.body:
        return []  # the heading is the whole item: its chunk already says it
    sentences = split_sentences(item.body)
    texts = [item.heading] + ["".join(sentences[i : i + window]) for i in range(max(1, len(sentences) - window + 1))]
    return [Chunk(f"{item.id}{SUB_MARK}{k}", item.id, item.sample_id, item.heading, text, item.dimensions)
            for k, text in enumerate(texts, 1)]


def is_sub_chunk(chunk_id: str) -> bool:
    """Whether a chunk id names a sentence sub-chunk. Example: is_sub_chunk("s/01/2#s3") is True"""
    return re.search(rf"{SUB_MARK}\d+$", chunk_id) is not None


def split_sentences(text: str) -> list[str]:
    """Split Chinese text after sentence-ending punctuation (closing quotes stay with their sentence)."""
    parts = re.split(r"(?<=[。！？!?；;])(?![”’」』）)])", text)
    return [p for p in (part.strip() for part in parts) if p]


def _pack_sentences(text: str, size: int) -> list[str]:
    parts: list[str] = []
    for sentence in split_sentences(text):
        if parts and len(parts[-1]) + len(sentence) <= size:
            parts[-1] += sentence
        else:
            parts.append(sentence)
    return parts


def load_corpus(root: str | Path = DEFAULT_CORPUS, dimensions: str | Path | None = None) -> Corpus:
    """Read every document under `root` into samples and items; unusable files go to `problems`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"找不到语料文件夹「{root}」，请用 --corpus 指定一个存在的文件夹。")
    if dimensions is None:
        own = root / "dimensions.yaml"
        dimensions = own if own.exists() else DEFAULT_DIMENSIONS
    tagger = DimensionTagger(dimensions)
    corpus = Corpus(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES):
        rel = path.relative_to(root).as_posix()
        if path.name.startswith(("~$", ".")):  # Word lock files, hidden files
            continue
        corpus.files.append(rel)
        try:
            text = read_document(path)
        except InputError as exc:
            corpus.problems.append(str(exc))
            continue
        stem = Path(rel).with_suffix("").as_posix()
        found = 0
        for number, sample_text in split_samples(text):
            sample_id = f"{stem}/{number}" if number else stem
            preamble, items = parse_items(sample_text, sample_id)
            if not items:
                continue
            items = [Item(**{**vars(it), "dimensions": tagger.tag(it.heading, it.body)}) for it in items]
            corpus.samples.append(Sample(sample_id, rel, preamble, items))
            found += 1
        if not found:
            corpus.problems.append(f"文件「{rel}」里没有找到编号条目（如“（一）”“一是”“一、”“1．”），已跳过。")
    return corpus
