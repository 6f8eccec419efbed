"""Write a draft as a Word document laid out the way Chinese official documents are (GB/T 9704).

Title 二号 方正小标宋简体 centred; body 三号 仿宋_GB2312 with a two-character first-line indent;
numbered headings as the draft uses them: the outermost numbering style (一、 before （一） before
一是 before 1.) is level one in 黑体, the next level two in 楷体, deeper ones 仿宋 bold. In an item
written as one paragraph ("（一）标题句。正文……") only the heading sentence takes the heading font.
Fixed 28-pt line spacing, margins 3.7/3.5/2.8/2.6 cm, page numbers "— 1 —" in the footer (odd pages
right, even pages left). Markdown residue (`#`, `**`, list bullets) is stripped.

Fonts are named as the standard names them; the font table also lists each one's common Windows
fallback (仿宋, 宋体, 黑体, 楷体) as its alternate name and GB2312 charset, so Word/WPS substitute a
Chinese face when the exact one is missing. `font_note()` says which are missing on this machine.

Left out: 发文机关标志, 版记 and the other parts of a full 公文 (a draft section does not have them),
tables, images, footnotes.
"""

import re
import shutil
import subprocess
from pathlib import Path

from pipeline.corpus.samples import line_style, split_heading
from pipeline.errors import InputError
from pipeline.textio import read_document

# role -> (font named by GB/T 9704, common fallback, size in pt)
FONTS = {
    "title": ("方正小标宋简体", "宋体", 22),  # 二号
    "body": ("仿宋_GB2312", "仿宋", 16),  # 三号
    "h1": ("黑体", "黑体", 16),
    "h2": ("楷体_GB2312", "楷体", 16),
    "h3": ("仿宋_GB2312", "仿宋", 16),
    "page": ("宋体", "宋体", 14),  # 四号 page numbers
}
FALLBACK_LATIN = {"仿宋": "FangSong", "宋体": "SimSun", "黑体": "SimHei", "楷体": "KaiTi"}
LINE_PT = 28
MARGINS_CM = {"top": 3.7, "bottom": 3.5, "left": 2.8, "right": 2.6}
STYLE_ORDER = ["dun", "paren", "shi", "arabic"]  # 一、 > （一） > 一是 > 1.

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s*")
_MD_BULLET = re.compile(r"^\s*(?:[-*+]\s+|>\s?)")
_MD_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$")
_SENTENCE_END = "。！？；：.!?;:"


def clean_markdown(line: str) -> tuple[str, int]:
    """Strip Markdown marks from one line; return (text, heading level or 0). Example: "## **一、甲**" -> ("一、甲", 2)"""
    level = 0
    match = _MD_HEADING.match(line)
    if match:
        level = len(match.group(1))
        line = line[match.end() :]
    else:
        line = _MD_BULLET.sub("", line)
    line = line.replace("**", "").replace("__", "").replace("`", "")
    return line.strip(), level


def parse_blocks(text: str, title: str | None = None) -> tuple[str | None, list[tuple[str, str]]]:
    """Split a draft into (title, [(role, text)]) with role body/h1/h2/h3.

    The first line becomes the title when none is given and it is a Markdown heading, or short and
    unpunctuated and not a numbered item.
    """
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if _MD_RULE.match(raw):
            continue
        line, md_level = clean_markdown(raw)
        if line:
            lines.append((line, md_level))
    if title is None and lines:
        first, md_level = lines[0]
        if md_level == 1 or (len(first) <= 40 and first[-1] not in _SENTENCE_END and line_style(first) is None):
            title, lines = first, lines[1:]
    present = [s for s in STYLE_ORDER if any(line_style(line) == s for line, _ in lines)]
    blocks = []
    for line, md_level in lines:
        style = line_style(line)
        if style is not None:
            role = ("h1", "h2", "h3")[min(present.index(style), 2)]
        elif md_level:
            role = ("h1", "h1", "h2", "h3", "h3", "h3")[md_level - 1]
        else:
            role = "body"
        blocks.append((role, line))
    return (title.strip() if title else None), blocks


def write_docx(text: str, path: Path, *, title: str | None = None) -> Path:
    """Write `text` (a draft, Markdown or plain) to a GB/T 9704-style .docx at `path`; return the path."""
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    path = Path(path)
    title, blocks = parse_blocks(text, title)
    if not title and not blocks:
        raise InputError("没有可导出的内容：草稿是空的。")
    doc = Document()
    _page_setup(doc)
    normal = doc.styles["Normal"]
    _set_font(normal, "body")
    _line_spacing(normal.paragraph_format)
    if title:
        para = doc.add_paragraph()
        para.alignment = WD_ALIGN_PARAGRAPH.CENTER
        _set_font(para.add_run(title), "title")
        doc.add_paragraph()  # one blank line between title and body, as 公文 do
    for role, line in blocks:
        para = doc.add_paragraph()
        para.paragraph_format.first_line_indent = Pt(32)  # two 三号 characters
        para.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
        if role == "body":
            _set_font(para.add_run(line), "body")
            continue
        _, body = split_heading(line)  # "（一）标题句。正文": only the heading sentence takes the heading font
        head = line[: len(line) - len(body)] if body else line
        _set_font(para.add_run(head), role)
        if body:
            _set_font(para.add_run(body), "body")
    _page_numbers(doc)
    _font_table(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        doc.save(str(path))
    except OSError as exc:
        raise InputError(f"无法写入「{path}」：{exc.strerror or exc}。请换一个位置或关闭正在打开该文件的 Word/WPS。") from None
    return path


def _set_font(target, role: str) -> None:
    """Set size and fonts on a run or style; East Asian text needs w:eastAsia in rFonts."""
    from docx.oxml.ns import qn
    from docx.shared import Pt

    name, _, size = FONTS[role]
    font = target.font
    font.size = Pt(size)
    font.name = name  # sets w:ascii and w:hAnsi
    font.bold = True if role == "h3" else None
    rpr = target.element.get_or_add_rPr()
    rfonts = rpr.find(qn("w:rFonts"))
    if rfonts is None:
        rfonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.insert(0, rfonts)
    rfonts.set(qn("w:eastAsia"), name)


def _line_spacing(fmt) -> None:
    from docx.enum.text import WD_LINE_SPACING
    from docx.shared import Pt

    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = Pt(LINE_PT)
    fmt.space_before = Pt(0)
    fmt.space_after = Pt(0)


def _page_setup(doc) -> None:
    from docx.shared import Cm

    section = doc.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)  # A4
    for side, cm in MARGINS_CM.items():
        setattr(section, f"{side}_margin", Cm(cm))


def _page_numbers(doc) -> None:
    """Footer "— PAGE —" in 四号 宋体: right on odd pages, left on even pages (GB/T 9704 7.5)."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    doc.settings.odd_and_even_pages_header_footer = True
    section = doc.sections[0]
    for footer, align in ((section.footer, WD_ALIGN_PARAGRAPH.RIGHT), (section.even_page_footer, WD_ALIGN_PARAGRAPH.LEFT)):
        para = footer.paragraphs[0]
        para.alignment = align
        _set_font(para.add_run("— "), "page")
        run = para.add_run()
        _set_font(run, "page")
        for kind, extra in (("begin", None), ("instr", " PAGE "), ("separate", None), ("text", "1"), ("end", None)):
            if kind == "instr":
                el = OxmlElement("w:instrText")
                el.set(qn("xml:space"), "preserve")
                el.text = extra
            elif kind == "text":
                el = OxmlElement("w:t")
                el.text = extra
            else:
                el = OxmlElement("w:fldChar")
                el.set(qn("w:fldCharType"), kind)
            run._r.append(el)
        _set_font(para.add_run(" —"), "page")


def _font_table(doc) -> None:
    """List the named fonts in word/fontTable.xml with their fallback as altName and charset GB2312."""
    from lxml import etree

    part = next((p for p in doc.part.package.iter_parts() if str(p.partname) == "/word/fontTable.xml"), None)
    if part is None:
        return
    ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    root = etree.fromstring(part.blob)
    have = {el.get(f"{{{ns}}}name") for el in root.findall(f"{{{ns}}}font")}
    for name, fallback, _ in FONTS.values():
        if name in have:
            continue
        have.add(name)
        font = etree.SubElement(root, f"{{{ns}}}font", {f"{{{ns}}}name": name})
        if fallback != name:
            etree.SubElement(font, f"{{{ns}}}altName", {f"{{{ns}}}val": fallback})
        etree.SubElement(font, f"{{{ns}}}charset", {f"{{{ns}}}val": "86"})  # GB2312
        etree.SubElement(font, f"{{{ns}}}family", {f"{{{ns}}}val": "modern" if "仿宋" in name else "auto"})
        etree.SubElement(font, f"{{{ns}}}pitch", {f"{{{ns}}}val": "variable"})
    part._blob = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)  # plain Part: blob only


def installed_font_families() -> set[str] | None:
    """Font family names fontconfig knows, or None when fc-list is not available."""
    if not shutil.which("fc-list"):
        return None
    try:
        out = subprocess.run(["fc-list", ":", "family"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


def font_note(families: set[str] | None = None) -> str | None:
    """A Chinese note naming the standard fonts missing here and what stands in for them; None if all present."""
    families = installed_font_families() if families is None else families
    if families is None:
        return "提示：无法检查本机字体（没有 fc-list）。文档按 GB/T 9704 指定字体排版；缺字体时 Word/WPS 会用仿宋、宋体、黑体、楷体代替。"
    missing = []
    for name, fallback, _ in dict.fromkeys(FONTS.values()):
        if name in families:
            continue
        if fallback != name and (fallback in families or FALLBACK_LATIN.get(fallback) in families):
            missing.append(f"{name}（本机以「{fallback}」代替）")
        else:
            missing.append(name)
    if not missing:
        return None
    return (
        "提示：本机缺少公文字体 " + "、".join(missing) + "。文档里仍写明规范字体，在装有这些字体的电脑上打开即按规范显示；"
        "否则 Word/WPS 会用替代字体显示，版式（字号、行距、页边距）不变。"
    )


def export_file(src: Path, dst: Path, *, title: str | None = None) -> Path:
    """Read a draft (.md/.txt/.docx) and write it to `dst` (.docx). Example: export_file(Path("d.md"), Path("d.docx"))"""
    dst = Path(dst)
    if dst.suffix.lower() != ".docx":
        raise InputError(f"输出文件「{dst}」应以 .docx 结尾。")
    if Path(src).resolve() == dst.resolve():
        raise InputError("输出文件不能与输入文件相同，请换一个文件名。")
    return write_docx(read_document(src), dst, title=title)
