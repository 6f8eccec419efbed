"""Read user documents (.txt, .md, .docx) into text, whatever their encoding.

Encoding detection is charset-normalizer's; .docx is read with python-docx (paragraph text only:
tables, headers and footnotes are left out). Every failure is an InputError naming the file.
"""

from pathlib import Path

from pipeline.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
DOC_SUFFIXES = TEXT_SUFFIXES | {".docx"}
MAX_BYTES = 20 * 1024 * 1024  # a situation note or sample file is kilobytes; 20 MB is surely a mistake

# BOMs first: charset-normalizer handles them too, but a BOM is a fact, not a guess.
_BOMS = [(b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")]


def decode_bytes(data: bytes, name: str = "输入") -> str:
    """Decode bytes of unknown encoding (UTF-8, UTF-8-BOM, GBK/GB18030, UTF-16 with or without BOM) to str.

    Example: decode_bytes("原因".encode("gbk")) == "原因"
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _clean(data.decode(encoding, errors="replace"))
    if b"\x00" in data[:4096] and (text := _utf16_without_bom(data)) is not None:
        return _clean(text)
    try:
        return _clean(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and not _looks_binary(data, str(best)):
        text = str(best)
        # GBK guesses are often labelled as a close cousin (gb2312, big5); GB18030 decodes a superset.
        if best.encoding in {"gb2312", "gbk", "hz", "big5", "cp950"}:
            try:
                text = data.decode("gb18030")
            except UnicodeDecodeError:
                pass
        return _clean(text)
    # charset-normalizer needs some length to be sure; short GBK notes are common, so try GB18030 strictly
    if b"\x00" not in data:
        try:
            text = data.decode("gb18030")
            if not _looks_binary(data, text) and _cjk_share(text) > 0.3:
                return _clean(text)
        except UnicodeDecodeError:
            pass
    raise InputError(f"无法读取「{name}」：看起来不是文本文件（可能是二进制文件或未知编码）。请另存为 UTF-8 文本。")


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text saved without a BOM (some Windows tools do): NULs on one side of each byte pair.

    Example: _utf16_without_bom("原因\n1. 学习".encode("utf-16-le")) == "原因\n1. 学习"
    """
    if len(data) % 2:
        return None
    head = data[:4096]
    even, odd = head[0::2].count(0), head[1::2].count(0)  # ASCII in LE has its NUL second
    encoding = "utf-16-le" if odd > even else "utf-16-be"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    sample = text[:2048]
    plain = sum(1 for ch in sample if _plausible(ch))  # random bytes decode to scattered scripts
    return text if sample and plain / len(sample) > 0.95 else None


def _plausible(ch: str) -> bool:
    """A character a Chinese note is made of: ASCII text, CJK, CJK and full-width punctuation."""
    return (" " <= ch <= "~" or ch in "\n\r\t" or "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f"
            or "\uff00" <= ch <= "\uffef" or "\u2010" <= ch <= "\u2027" or ch in "\u00b7\u00d7")


def read_text(path: str | Path) -> str:
    """A rule or settings file (YAML, TOML) of any encoding as text; OSError is left to the caller."""
    return decode_bytes(Path(path).read_bytes(), str(path))


def _cjk_share(text: str) -> float:
    visible = [ch for ch in text if not ch.isspace()]
    return sum(1 for ch in visible if "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef") / max(1, len(visible))


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")


def _looks_binary(data: bytes, text: str) -> bool:
    if b"\x00" in data[:4096]:
        return True
    control = sum(1 for ch in text[:4096] if ord(ch) < 32 and ch not in "\n\r\t\f")
    return control > 8


def read_document(path: str | Path, *, max_bytes: int = MAX_BYTES) -> str:
    """Return the text of a .txt/.md/.docx file; raise InputError with a Chinese message otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"找不到文件「{path}」，请检查路径。")
    if path.is_dir():
        raise InputError(f"「{path}」是文件夹，请给出一个文件。")
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"文件「{path}」太大（{size // 1024} KB，上限 {max_bytes // 1024} KB）。")
    suffix = path.suffix.lower()
    if suffix == ".docx":
        text = _read_docx(path)
    elif suffix in TEXT_SUFFIXES or suffix == "":
        data = path.read_bytes()
        if data.startswith(b"PK\x03\x04"):
            raise InputError(f"文件「{path}」是压缩包或 Word 文档，请把扩展名改为 .docx 或另存为 .txt。")
        text = decode_bytes(data, str(path))
    else:
        raise InputError(f"不支持的文件类型「{path.name}」：请使用 .txt、.md 或 .docx。")
    if not text.strip():
        raise InputError(f"文件「{path}」是空的。")
    return text


def _read_docx(path: Path) -> str:
    import zipfile

    from docx import Document

    try:
        document = Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise InputError(f"无法打开 Word 文件「{path}」：文件已损坏或不是 .docx（{type(exc).__name__}）。") from None
    except Exception as exc:  # python-docx raises assorted lxml/opc errors on broken packages
        raise InputError(f"无法打开 Word 文件「{path}」：文件已损坏或不是 .docx（{type(exc).__name__}）。请用 Word/WPS 另存后重试。") from None
    return "\n".join(p.text for p in document.paragraphs)


def write_json(path: Path, data, indent: int | None = None) -> None:
    """Write `data` as UTF-8 JSON atomically: a temporary file in the same folder, renamed into place."""
    import json
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
