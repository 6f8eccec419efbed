"""Corpus parsing: samples and items of the seed, encodings, and files that cannot be used."""

import re

import pytest

from pipeline.corpus.samples import (DEFAULT_CORPUS, DimensionTagger, chunk_item, cn_to_int, detect_style, load_corpus,
                             parse_items, split_heading, split_samples)
from pipeline.errors import InputError
from pipeline.textio import decode_bytes, read_document

SEED = DEFAULT_CORPUS / "seed-2021-dangshi.txt"
# items per sample, counted by hand from the seed text
SEED_ITEMS = {"01": 5, "02": 3, "03": 4, "04": 5, "05": 4, "06": 3, "07": 4, "08": 4, "09": 4, "10": 4}


def test_seed_has_ten_samples_with_expected_item_counts():
    corpus = load_corpus(DEFAULT_CORPUS)
    assert corpus.problems == []
    counts = {s.id.rsplit("/", 1)[1]: len(s.items) for s in corpus.samples}
    assert counts == SEED_ITEMS


def test_item_counts_match_numbered_lines_in_the_raw_text():
    """Independent count: lines starting with the sample's numbering marker, straight from the file."""
    marker = re.compile(r"^(（[一二三四五六七八九十]+）|[一二三四五六七八九十]+是)")
    for number, text in split_samples(SEED.read_text(encoding="utf-8")):
        assert sum(1 for line in text.split("\n") if marker.match(line)) == SEED_ITEMS[number]


def test_items_are_numbered_in_sequence_with_heading_and_body():
    for sample in load_corpus(DEFAULT_CORPUS).samples:
        assert [it.number for it in sample.items] == list(range(1, len(sample.items) + 1))
        for item in sample.items:
            assert item.heading and len(item.heading) < 60
            assert item.dimensions
    items = {it.id: it for it in load_corpus(DEFAULT_CORPUS).items}
    assert items["seed-2021-dangshi/06/1"].heading == "理想信念方面"
    assert items["seed-2021-dangshi/01/2"].heading == "宗旨意识树的不牢"
    assert items["seed-2021-dangshi/01/2"].body.startswith("全心全意为人民服务")


@pytest.mark.parametrize("text, style, numbers", [
    ("（一）甲。正文。\n（二）乙。正文。", "paren", [1, 2]),
    ("一是甲。正文。\n二是乙。\n三是丙。", "shi", [1, 2, 3]),
    ("一、甲。正文。\n二、乙。正文。", "dun", [1, 2]),
    ("1．甲。正文。\n2．乙。正文。\n10．丙。", "arabic", [1, 2, 10]),
    ("导语。\n（一）甲。\n1．嵌套的小点。\n（二）乙。", "paren", [1, 2]),
])
def test_item_styles(text, style, numbers):
    assert detect_style(text) == style
    _, items = parse_items(text, "x")
    assert [it.number for it in items] == numbers


def test_nested_list_stays_in_its_item():
    preamble, items = parse_items("导语。\n（一）甲。\n1．嵌套的小点。\n（二）乙。", "x")
    assert preamble == "导语。"
    assert "嵌套的小点" in items[0].body


def test_helpers():
    assert cn_to_int("三") == 3 and cn_to_int("十") == 10 and cn_to_int("十二") == 12 and cn_to_int("二十一") == 21
    assert split_heading("理想信念方面。班子成员。") == ("理想信念方面", "班子成员。")
    assert split_samples("只有一篇。") == [("", "只有一篇。")]


def test_tagger_uses_editable_file(tmp_path):
    path = tmp_path / "dims.yaml"
    path.write_text("min_score: 1\ndimensions:\n  甲类: [苹果]\n  乙类: [香蕉]\n", encoding="utf-8")
    tagger = DimensionTagger(path)
    assert tagger.tag("香蕉问题", "") == ("乙类",)
    assert set(tagger.tag("苹果", "香蕉")) == {"甲类", "乙类"}
    (tmp_path / "bad.yaml").write_text("nothing: here", encoding="utf-8")
    with pytest.raises(InputError):
        DimensionTagger(tmp_path / "bad.yaml")


def test_long_item_is_chunked_at_sentence_ends():
    item = max(load_corpus(DEFAULT_CORPUS).items, key=lambda it: len(it.text))
    chunks = chunk_item(item, size=200)
    assert len(chunks) > 1
    assert all(c.text.startswith(item.heading) for c in chunks)
    assert "".join(c.text[len(item.heading) + 1 :] for c in chunks) == item.body


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_encodings_decode(encoding):
    text = "（一）理论学习不够深入。班子成员学用脱节，调研次数偏少。\n（二）宗旨意识树得不牢。"
    assert decode_bytes(text.encode(encoding)) == text


def test_unusable_files_are_reported_and_the_rest_indexed(tmp_path):
    (tmp_path / "good.txt").write_text("（一）甲方面。正文内容。\n（二）乙方面。正文内容。", encoding="gbk")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "plain.md").write_text("这里没有编号条目，只是一段话。", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert [s.id for s in corpus.samples] == ["good"]
    assert len(corpus.items) == 2
    joined = "\n".join(corpus.problems)
    for name in ("empty.txt", "binary.txt", "broken.docx", "plain.md"):
        assert name in joined
    assert len(corpus.problems) == 4


def test_docx_corpus_file(tmp_path):
    from docx import Document

    doc = Document()
    for line in ["标题", "（一）理论学习不深。学习流于形式。", "（二）作风不实。调研少。"]:
        doc.add_paragraph(line)
    doc.save(tmp_path / "s.docx")
    assert "学习流于形式" in read_document(tmp_path / "s.docx")
    assert len(load_corpus(tmp_path).items) == 2


def test_missing_corpus_folder(tmp_path):
    with pytest.raises(InputError, match="找不到语料文件夹"):
        load_corpus(tmp_path / "nope")


def test_repeated_item_numbers_stay_separate_items():
    """Two lists in one sample (or a numbering slip): 4 items stay 4, each with its own id and chunk."""
    text = "（一）理论学习不深入。正文甲。\n（二）宗旨意识不牢。正文乙。\n（一）作风不实。正文丙。\n（二）纪律松弛。正文丁。"
    _, items = parse_items(text, "x/01")
    assert [it.heading for it in items] == ["理论学习不深入", "宗旨意识不牢", "作风不实", "纪律松弛"]
    assert [it.id for it in items] == ["x/01/1", "x/01/2", "x/01/1-2", "x/01/2-2"]
    chunks = [c.id for it in items for c in chunk_item(it)]
    assert len(set(chunks)) == 4


def test_repeated_numbers_in_a_corpus_file_are_all_loaded(tmp_path):
    (tmp_path / "s.txt").write_text("（一）甲方面。正文。\n（一）乙方面。正文。\n（二）丙方面。正文。\n（二）丁方面。正文。",
                                    encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert len(corpus.items) == 4 and len({c.id for it in corpus.items for c in chunk_item(it)}) == 4
