"""Copy detection: the labelled cases, canonical terms, the window rule, quotations, offsets, the winnowing
guarantee, the cache."""

import random
import shutil

import numpy as np
import pytest
import yaml

from conftest import DATA, ROOT
from pipeline.checks.copycheck import (FRAGMENT, GAP, IDENTITY, CopyIndex, Normaliser, blocks, chains, kgram_hashes,
                                load_terms, quote_spans, sentence_spans, winnow)
from pipeline.corpus.samples import DEFAULT_CORPUS

CASES = yaml.safe_load((DATA / "copy_cases.yaml").read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return CopyIndex.load(DEFAULT_CORPUS, tmp_path_factory.mktemp("copycache"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c['label']}-{c['style']}-{i}" for i, c in enumerate(CASES)])
def test_labelled_case(index, case):
    scan = index.scan(case["text"])
    if case["label"] == "copied":
        assert scan.copied, case["text"]  # a half-width ";" may split one copied sentence into two flags
        allowed = set(case.get("sources") or [case["source"]])
        assert {f.source_id for f in scan.copied} <= allowed, [f.to_dict() for f in scan.copied]
    else:
        assert scan.copied == [], [f.to_dict() for f in scan.copied]
    if case["label"] == "quotation":
        assert scan.quotations and {q.source_id for q in scan.quotations} == {case["source"]}
        for q in scan.quotations:
            assert case["text"][q.start : q.end] == q.text
    else:
        assert scan.quotations == []


def test_every_edit_style_is_covered():
    styles = {c["style"] for c in CASES if c["label"] == "copied"}
    assert {"verbatim", "punctuation", "width", "swap", "unit", "insert", "reorder"} <= styles
    assert {"chopped", "patchwork", "perturbed"} <= styles
    originals = {c["style"] for c in CASES if c["label"] == "original"}
    assert {"topic", "canonical", "stock", "paraphrase", "formula", "clauses", "fragment"} <= originals
    assert sum(c["label"] == "quotation" for c in CASES) >= 5


@pytest.mark.parametrize("style", ["chopped", "patchwork", "perturbed"])
def test_evasions_are_caught_by_the_window_rule(index, style):
    for case in (c for c in CASES if c["style"] == style):
        flags = index.check(case["text"])
        assert any(f.rule == "window" for f in flags), case["text"]
        # most of the copied text is marked, not just one clause of it
        assert sum(f.covered for f in flags) >= 0.6 * index.norm_length(case["text"]), case["text"]


def test_patchwork_names_its_sources(index):
    case = next(c for c in CASES if c["style"] == "patchwork")
    (flag,) = index.check(case["text"])
    assert len(flag.sources) >= 2 and set(flag.sources) <= set(case["sources"])
    assert flag.to_dict()["rule"] == "window" and flag.to_dict()["sources"] == flag.sources


def test_chains_tolerate_one_changed_character_in_eight():
    source = "班子成员对于新常态下如何进一步担当尽责更好地服务全镇发展自我加压还不够"
    draft = "班子成员对于新常态中如何进一步担当负责更好地服务全县发展自我加压还不够"  # no shared run of 10
    grams = {}
    for j in range(len(source) - 3):
        grams.setdefault(source[j : j + 4], []).append(j)
    found = blocks(draft, source, grams)
    assert max(n for _, _, n in found) < 10
    (start, end, matched), *_ = sorted(chains(found, GAP, IDENTITY, FRAGMENT), key=lambda g: -g[2])
    assert (start, end) == (0, len(draft)) and matched == len(draft) - 3
    assert chains(blocks("理论学习还不够深入其他的字全都不同", source, grams), GAP, IDENTITY, FRAGMENT) == []


def test_quote_spans():
    text = "习近平总书记强调，“必须增强政治意识。”我们要对照。"
    (a, b), = quote_spans(text)
    assert text[a:b] == "必须增强政治意识。"
    text = "对习近平总书记提出的“猛药去疴”“壮士断腕”、“刮骨疗毒”理解不深。"
    assert [text[a:b] for a, b in quote_spans(text)] == ["猛药去疴", "壮士断腕", "刮骨疗毒"]
    text = "习近平总书记鲜明指出，党的作风关系党的形象。我们对此认识不深。"
    assert [text[a:b] for a, b in quote_spans(text)] == ["党的作风关系党的形象"]
    text = "习近平总书记在庆祝中国共产党成立100周年大会上强调：“以史为鉴、开创未来。”"
    assert [text[a:b] for a, b in quote_spans(text)] == ["以史为鉴、开创未来。"]
    text = "对标习近平总书记关于作风建设的重要论述精神，结合班子实际，剖析如下。存在“两张皮”问题。"
    assert quote_spans(text) == []
    assert [text[a:b] for a, b in quote_spans(text, attributed=False)] == ["两张皮"]
    # no speech: a name inside a term, an instruction's "要求", a comma before the verb
    for text in ("学习习近平新时代中国特色社会主义思想不够深入，对照党中央要求，我们还有差距。",
                 "贯彻落实习近平总书记重要指示要求，我们在防汛工作中还有漏洞。",
                 "习近平总书记重要讲话精神学得不深，我们常说，学用脱节。"):
        assert quote_spans(text) == [], text


def test_quotation_the_samples_do_not_quote_is_neither(index):
    text = "习近平总书记指出，“江山就是人民，人民就是江山。”我们在窗口服务中对群众的急事难事回应还不够快。"
    scan = index.scan(text)
    assert scan.copied == [] and scan.quotations == []


def test_attributing_a_samples_own_words_is_still_copying(index):
    # 02/2 says this in its own words, not as a quotation: putting it in 总书记's mouth does not make it one
    text = "习近平总书记指出，“没有做到时时处处从党执政为民的初心出发，从一名共产党员应有的使命责任出发。”"
    scan = index.scan(text)
    assert scan.quotations == []
    assert [f.source_id for f in scan.copied] == ["seed-2021-dangshi/02/2"]


def test_copied_text_around_a_quotation_is_still_copying(index):
    quote = "习近平总书记强调，“必须增强政治意识，善于从政治上看问题，善于把握政治大局，不断提高政治判断力、政治领悟力、政治执行力。”"
    copied = "特别是在工作任务重的时候，与群众面对面沟通交流的时间相对少了，与群众之间的联系不够紧密。"
    scan = index.scan(quote + copied)
    assert [q.source_id for q in scan.quotations] == ["seed-2021-dangshi/08/2"]
    assert [f.source_id for f in scan.copied] == ["seed-2021-dangshi/03/3"]
    (flag,) = scan.copied  # "。”" ends no sentence (corpus.split_sentences): one sentence, quotation excluded
    assert flag.runs[0][0] >= len(quote) and flag.containment > 0.9


def test_titles_are_one_character():
    norm = Normaliser(load_terms())
    a, spans = norm("学习《中国共产党纪律处分条例（2023年修订）》不够")
    b, _ = norm("对《中国共产党纪律处分条例（2023年修订）》")
    assert len(a) == 5 and a[2] == b[1] and ord(a[2]) >= 0xF0000
    assert "学习《中国共产党纪律处分条例（2023年修订）》不够"[spans[2][0] : spans[2][1]].startswith("中国共产党")


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


def test_window_flag_offsets_point_into_the_text(index):
    picked = [next(c["text"] for c in CASES if c["style"] == style) for style in ("chopped", "patchwork", "perturbed")]
    text = "（二）原因剖析。\n" + "\n".join(picked) + "\n班子学习抓得不紧；调研走得不深。"
    flags = index.check(text)
    assert {f.rule for f in flags} == {"window"} and len(flags) >= 3
    for flag in flags:
        assert text[flag.start : flag.end] == flag.sentence
        assert flag.runs and all(flag.start <= a < b <= flag.end for a, b in flag.runs)
        assert 0.5 <= flag.containment <= 1 and flag.sources[0] == flag.source_id
    assert all(f.end <= text.index("班子学习") for f in flags)


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
    for term in ("关于新形势下党内政治生活的若干准则", "问政于民问计于民问需于民", "内化于心外化于行",
                 "全面建设社会主义现代化国家新征程"):
        assert term in terms
    assert terms == sorted(terms, key=lambda t: (-len(t), t))
