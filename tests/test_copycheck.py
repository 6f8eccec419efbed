"""Copy detection: the labelled cases, canonical terms, offsets, the winnowing guarantee, the cache."""

import random
import shutil

import numpy as np
import pytest
import yaml

from conftest import DATA, ROOT
from pipeline.copycheck import CopyIndex, Normaliser, kgram_hashes, load_terms, sentence_spans, winnow
from pipeline.corpus import DEFAULT_CORPUS

CASES = yaml.safe_load((DATA / "copy_cases.yaml").read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return CopyIndex.load(DEFAULT_CORPUS, tmp_path_factory.mktemp("copycache"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c['label']}-{c['style']}-{i}" for i, c in enumerate(CASES)])
def test_labelled_case(index, case):
    flags = index.check(case["text"])
    if case["label"] == "copied":
        assert flags, case["text"]  # a half-width ";" may split one copied sentence into two flags
        assert {f.source_id for f in flags} == {case["source"]}
    else:
        assert flags == [], [f.to_dict() for f in flags]


def test_every_edit_style_is_covered():
    styles = {c["style"] for c in CASES if c["label"] == "copied"}
    assert {"verbatim", "punctuation", "width", "swap", "unit", "insert", "reorder"} <= styles
    assert {"topic", "canonical", "stock", "paraphrase"} <= {c["style"] for c in CASES if c["label"] == "original"}


def test_normaliser_width_punctuation_and_terms():
    norm = Normaliser(load_terms())
    a, _ = norm("ＡＢＣ　１２３，“全心全意为人民服务”！")
    b, _ = norm("abc 123,全心全意为人民服务!")
    assert a == b and len(a) == 7  # the canonical term is one character
    text = "坚持全心全意为人民服务。"
    n, spans = norm(text)
    assert text[spans[2][0] : spans[2][1]] == "全心全意为人民服务"


def test_run_inside_canonical_term_is_short(index):
    # shares the long term 习近平新时代中国特色社会主义思想 with 10/1, nothing else
    text = "我们对习近平新时代中国特色社会主义思想的学习和运用在审计一线还有很多空白。"
    assert index.check(text) == []


def test_offsets_point_into_the_text(index):
    copied = [c["text"] for c in CASES if c["label"] == "copied"][:5]
    text = "（一）班子原因剖析如下。\n" + "".join(copied) + "\n这是一句全新的话，和范文没有关系。"
    flags = index.check(text)
    assert len(flags) == 6  # the fourth case's ";" splits it in two
    assert 0.8 < sum(f.covered for f in flags) / index.norm_length(text) < 1
    for flag in flags:
        assert text[flag.start : flag.end] == flag.sentence
        assert flag.runs and all(flag.start <= a < b <= flag.end for a, b in flag.runs)
        assert 0 < flag.containment <= 1 and flag.longest >= 10


def test_sentence_spans_round_trip():
    text = "第一句。第二句！\n标题行\n“引号句。”后面"
    for start, end, sentence in sentence_spans(text):
        assert text[start:end] == sentence


def test_winnowing_finds_every_shared_run_of_nine():
    rng = random.Random(3)
    alphabet = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
    for _ in range(50):
        shared = "".join(rng.choice(alphabet) for _ in range(9))
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) + shared + "".join(rng.choice(alphabet) for _ in range(30))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) + shared
        fa = set(kgram_hashes(a)[winnow(kgram_hashes(a))].tolist())
        assert fa & set(kgram_hashes(b).tolist())


def test_winnow_short_inputs():
    assert len(winnow(np.zeros(0, dtype=np.uint64))) == 0
    assert len(winnow(kgram_hashes("一二三四五六"))) == 1


def test_cache_is_reused_and_rebuilt_when_corpus_changes(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(DEFAULT_CORPUS / "seed-2021-dangshi.txt", corpus)
    cache = tmp_path / "cache"
    first = CopyIndex.load(corpus, cache)
    files = list(cache.glob("copyindex-*.pkl"))
    assert len(files) == 1
    again = CopyIndex.load(corpus, cache)
    assert len(again.hashes) == len(first.hashes) and list(cache.glob("copyindex-*.pkl")) == files
    new = "本局在数据共享平台建设中存在重复投入和条块分割的问题，各科室各自采购系统，接口标准互不兼容。"
    assert again.check(new) == []
    (corpus / "extra.txt").write_text(f"（一）新的范文条目。{new}\n（二）第二条。内容。\n", encoding="utf-8")
    rebuilt = CopyIndex.load(corpus, cache)
    assert [f.source_id for f in rebuilt.check(new)] == ["extra/1"]
    assert len(list(cache.glob("copyindex-*.pkl"))) == 1  # the stale cache was removed


def test_editing_the_terms_file_changes_the_index(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(DEFAULT_CORPUS / "seed-2021-dangshi.txt", corpus)
    sentence = "倾听群众意见不广泛，发挥群众智慧不充分，接受群众监督不主动。"
    assert CopyIndex.load(corpus, tmp_path / "c").check(sentence)
    (corpus / "canonical_terms.yaml").write_text(
        "terms: [倾听群众意见不广泛, 发挥群众智慧不充分, 接受群众监督不主动]\n", encoding="utf-8")
    assert CopyIndex.load(corpus, tmp_path / "c").check(sentence) == []


def test_project_terms_file_loads():
    terms = load_terms(ROOT / "corpus" / "canonical_terms.yaml")
    assert "全心全意为人民服务" in terms and "四风" in terms
    assert terms == sorted(terms, key=lambda t: (-len(t), t))
