"""The note reader's shared words: list markers, problem words, headings and lead-ins.

Used by guard.py (where an instruction ends), meeting.py (a heading never names the unit) and reader.py
(splitting problems). Left out: the patterns only one of those needs, which live there.
"""

import re

CN = "一二三四五六七八九十"
# a list marker at a line start: 1. 1、 1） （1） （一） 一、 一是 ① - • ·  (not "1.2万" or "一是一")
BULLET = re.compile(rf"^\s*(?:\d{{1,2}}\s*(?:[．.](?![\d.．])|[、)）])|[（(]\s*[\d{CN}]{{1,3}}\s*[)）]|[{CN}]{{1,3}}\s*[、是]|第[{CN}]{{1,3}}[，,、是：:]"
                    r"|其[一二三四五六七八九十][，,、：:]|问题[\d一二三四五六七八九十]{1,2}[：:．.、]|[①-⑳]|[-•·*▪●○◆■□►]|[Ⅰ-Ⅻ][．.、])\s*")
PROBLEM_HEAD = re.compile(r"问题|不足|差距|短板|查摆|检视|自查|对照检查|剖析|征求意见|意见建议|清单|批评|弱项")
OTHER_HEAD = re.compile(r"成绩|成效|亮点|做法|经验|概况|基本情况|简介|措施|计划|打算|目标|下一步|下步|整改(?:方向|情况|落实|进展|举措)|"
                        r"努力方向|思路|工作安排")
# a problem says something is missing, weak, late or wrong
PROBLEM = re.compile(
    r"(?<![毫决])不(?!断|懈|忘|移|折不扣|仅|但|少同志|同程度)|没|未(?!来)|无(?!论)|缺|欠|少|弱|慢|差|低|偏|难|乱|虚|浮|松|软|散|拖|仍|还是|依然|"
    r"推诿|漏洞|短板|问题|不足|差距|薄弱|形式|走过场|投诉|意见|隐患|风险|违规|违纪|违法|超标|超期|超时|积压|滞后|只|仅|多是|"
    r"照本宣科|两张皮|一刀切|过密|苗头|加码|重[^，。；\s]{1,5}轻|下降|倒数|负担|漏|错|失|怕|避|躲|卡顿|脱岗|坐支|占用|补记|代签|"
    r"吃请|宴请|收受|收了|一阵风|老大难|空转|照稿|摘抄|念稿|陪会|迎检|加班|流失|离职|拖延|单一|过多|偏多|太多|过长|太长|时限长|时间长|周期长|较长|重复|多头|迁就|铺张|走程序|急于求成|一言堂")
HEADER = re.compile(r"民主生活会|组织生活会|情况说明|对照检查材料|发言提纲|剖析材料")
LEADIN_WORDS = sorted(("但是 但 不过 然而 同时 也 还 仍然 仍 存在 有 着 的 了 一些 以下 如下 下列 几个 几点 几方面 方面 不少 诸多 主要 若干 这些 "
                       "问题 不足 差距 短板 和 与 及 以及 查摆 梳理 检视 出 发现 自查 对照 检查 班子 我们 本人 个人 表现 在 是 为 包括 具体 如 "
                       "清单 汇总 列 几 个 下 今年 去年 自己 下来 这么 这样 查").split(), key=len, reverse=True)


def is_leadin(sentence: str) -> bool:
    """A sentence that only announces problems: "但也存在一些问题" / "班子查摆出的主要问题有"."""
    if not PROBLEM_HEAD.search(sentence) and not re.search(r"如下|以下", sentence):
        return False
    rest = re.sub(r"[^\u4e00-\u9fff]", "", sentence)
    for word in LEADIN_WORDS:
        rest = rest.replace(word, "")
    return len(rest) <= 2 and not has_problem(rest)  # "其他问题" announces, "查摆问题不深" is one


def is_heading(line: str) -> bool:
    """A short line that opens a part of the note: "存在的问题：" / "主要成绩："."""
    line = line.strip()
    return line.endswith(("：", ":")) and char_count(line) <= 26 and bool(PROBLEM_HEAD.search(line) or OTHER_HEAD.search(line))


def has_problem(text: str) -> bool:
    return bool(PROBLEM.search(text))


def heading_of(line: str) -> str | None:
    """The heading of a line that opens a part of the note, else None.

    Example: heading_of("二、存在的问题") == "存在的问题"; heading_of("## 主要成绩") == "主要成绩"; heading_of("1. 调研不深入") is None
    """
    m = BULLET.match(line)
    rest = line[m.end() :] if m and not re.match(r"\s*[-•·*]", line) else line
    rest = re.sub(r"^[#>\s]+|[*_【】\[\]\s]", "", rest).rstrip("：:")
    if not rest or char_count(rest) > 16 or re.search(r"[，,。；;！？]", rest):
        return None
    if is_leadin(rest) or (OTHER_HEAD.search(rest) and not has_problem(rest)) or re.fullmatch(r"(?:存在的?)?问题(?:清单|汇总|及原因)?", rest):
        return rest
    return None


def char_count(text: str) -> int:
    return len(re.sub(r"\s", "", text))
