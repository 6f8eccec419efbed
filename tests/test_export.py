"""Word export: read the .docx back (fonts, sizes, spacing, margins, page field) and, where LibreOffice is installed, render it."""

import re
import shutil
import subprocess
import zipfile

import pytest
from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml.ns import qn
from docx.shared import Cm, Pt

from pipeline.errors import InputError
from pipeline.export import clean_markdown, export_file, font_note, parse_blocks, write_docx

DRAFT = """# 某某党支部班子原因剖析

对照检查发现的问题，深入剖析原因，主要有以下几个方面：

## 一、理论学习不够深入

（一）**学习的系统性不够**。对党的创新理论学得不深、悟得不透。

（二）学用结合不够紧密。结合本单位实际思考不够。

二、宗旨意识有所淡化

- 一是联系群众不够经常。深入基层调研次数偏少。
- 二是解决问题不够及时。
"""


def east_asia(run) -> str:
    return run.element.rPr.find(qn("w:rFonts")).get(qn("w:eastAsia"))


@pytest.fixture
def doc(tmp_path):
    path = write_docx(DRAFT, tmp_path / "out" / "draft.docx")
    assert path.exists()
    return Document(str(path)), path


@pytest.mark.parametrize(
    "line, expected",
    [("## **一、甲**", ("一、甲", 2)), ("- 一是乙。", ("一是乙。", 0)), ("> `丙`", ("丙", 0)), ("# 标题", ("标题", 1)), ("正文**加粗**。", ("正文加粗。", 0))],
)
def test_clean_markdown(line, expected):
    assert clean_markdown(line) == expected


def test_levels_follow_the_draft_numbering():
    title, blocks = parse_blocks(DRAFT)
    assert title == "某某党支部班子原因剖析"
    assert [role for role, _ in blocks] == ["body", "h1", "h2", "h2", "h1", "h3", "h3"]
    # a draft numbered only with （一） has those as level one
    _, blocks = parse_blocks("（一）甲方面。正文。\n（二）乙方面。正文。")
    assert [role for role, _ in blocks] == ["h1", "h1"]
    assert not any("*" in text or "#" in text for _, text in blocks)


def test_title_given_or_absent():
    title, blocks = parse_blocks("一是理论学习不够。正文。", None)
    assert title is None and len(blocks) == 1
    title, _ = parse_blocks("正文一句。", "给定标题")
    assert title == "给定标题"


def test_fonts_sizes_and_spacing(doc):
    document, _ = doc
    paras = [p for p in document.paragraphs if p.text]
    texts = [p.text for p in paras]
    assert texts[0] == "某某党支部班子原因剖析"
    assert not any("**" in t or t.startswith("#") or t.startswith("- ") for t in texts)
    title = paras[0]
    assert title.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert east_asia(title.runs[0]) == "方正小标宋简体" and title.runs[0].font.size == Pt(22)
    body = paras[1]
    assert east_asia(body.runs[0]) == "仿宋_GB2312" and body.runs[0].font.size == Pt(16)
    assert body.paragraph_format.first_line_indent == Pt(32)
    h1 = next(p for p in paras if p.text.startswith("一、"))
    assert east_asia(h1.runs[0]) == "黑体" and h1.runs[0].font.size == Pt(16)
    h2 = next(p for p in paras if p.text.startswith("（一）"))
    assert [r.text for r in h2.runs] == ["（一）学习的系统性不够。", "对党的创新理论学得不深、悟得不透。"]
    assert east_asia(h2.runs[0]) == "楷体_GB2312" and east_asia(h2.runs[1]) == "仿宋_GB2312"
    h3 = next(p for p in paras if p.text.startswith("二是"))
    assert h3.text == "二是解决问题不够及时。" and h3.runs[0].font.bold
    normal = document.styles["Normal"]
    assert normal.paragraph_format.line_spacing_rule == WD_LINE_SPACING.EXACTLY
    assert normal.paragraph_format.line_spacing == Pt(28)
    assert normal.font.size == Pt(16)


def test_margins_and_page_number_field(doc):
    document, path = doc
    section = document.sections[0]
    for side, cm in {"top": 3.7, "bottom": 3.5, "left": 2.8, "right": 2.6}.items():
        assert abs(getattr(section, f"{side}_margin") - Cm(cm)) < Cm(0.01), side
    assert document.settings.odd_and_even_pages_header_footer
    for footer, align in ((section.footer, WD_ALIGN_PARAGRAPH.RIGHT), (section.even_page_footer, WD_ALIGN_PARAGRAPH.LEFT)):
        xml = footer.paragraphs[0]._p.xml
        assert "PAGE" in xml and 'w:fldCharType="begin"' in xml
        assert footer.paragraphs[0].alignment == align
    font_table = zipfile.ZipFile(path).read("word/fontTable.xml").decode()
    assert 'w:name="仿宋_GB2312"' in font_table and 'w:val="仿宋"' in font_table


def test_export_file_reads_any_encoding(tmp_path):
    src = tmp_path / "draft.md"
    src.write_bytes(DRAFT.encode("gb18030"))
    out = export_file(src, tmp_path / "draft.docx")
    assert Document(str(out)).paragraphs[0].text == "某某党支部班子原因剖析"


@pytest.mark.parametrize("dst", ["draft.pdf", "draft.md"])
def test_export_file_refuses_wrong_target(tmp_path, dst):
    src = tmp_path / "draft.md"
    src.write_text(DRAFT, encoding="utf-8")
    with pytest.raises(InputError):
        export_file(src, tmp_path / dst)


def test_empty_draft_is_refused(tmp_path):
    with pytest.raises(InputError, match="空"):
        write_docx("  \n**\n", tmp_path / "x.docx")


def test_font_note():
    assert font_note({"方正小标宋简体", "仿宋_GB2312", "黑体", "楷体_GB2312", "宋体"}) is None
    note = font_note({"仿宋", "黑体", "宋体"})
    assert "仿宋_GB2312（本机以「仿宋」代替）" in note and "方正小标宋简体" in note
    assert "黑体" not in note and "宋体、" not in note  # present fonts are not listed


def test_cli_export(tmp_path, capsys):
    from pipeline.cli import main

    src = tmp_path / "draft.md"
    src.write_text(DRAFT, encoding="utf-8")
    assert main(["export", str(src)]) == 0
    assert (tmp_path / "draft.docx").exists()
    assert main(["export", str(tmp_path / "missing.md")]) == 2
    assert "找不到文件" in capsys.readouterr().err


@pytest.mark.skipif(not (shutil.which("libreoffice") and shutil.which("pdftotext")), reason="needs libreoffice-writer and poppler-utils")
def test_renders_with_libreoffice(doc, tmp_path):
    _, path = doc
    subprocess.run(
        ["libreoffice", f"-env:UserInstallation=file://{tmp_path}/lo", "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path), str(path)],
        check=True, capture_output=True, timeout=180,
    )
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "draft.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    assert "某某党支部班子原因剖析" in text and re.search(r"—\s*1\s*—", text)  # the PAGE field rendered
    assert "**" not in text and "#" not in text
