"""The meeting a note is about: its unit, year, theme, and the voice the draft speaks in.

All from patterns on the note's own words. Left out: normalising the unit's name, and the problems (reader.py).
"""

import re

from pipeline.note.lexicon import BULLET, heading_of

MEETING = re.compile(r"民主生活会|组织生活会")
ORG = re.compile(r"(?:党组|党委|党工委|党总支|党支部|支部|纪检监察组|纪检组|领导班子|班子|办公室|公司|集团|学院|医院|学校|小学|中学|大学|"
                 r"支行|分行|分局|局|委员会|委|办|社区|村|街道|镇|乡|所|中心|厂|站|队|院|部|处|科|馆|店|行)$")
FIRST_PERSON = re.compile(r"(?<![自忘唯好])我(?![们局院校镇县市区部处科所司行委组村厂党国省队站中社单支办好])|本人")  # not 自我批评, 你好我好
UNIT_END = re.compile(r"^(.{2,40}?(?:党组|党委|党工委|党总支|党支部|纪检监察组|纪检组|办公室|公司|集团|学院|医院|学校|局|委员会|社区|村|镇|乡|街道))"
                      r"(?=领导班子|班子|主题|专题|民主生活会|组织生活会|党纪|党史|学习|深入|不忘|关于|年度|度|$)")


def find_unit(text: str, strict: bool = False) -> str:
    """The unit the note is about, as the note names it, without 班子/领导班子. Example: "临江县农业农村局党组".
    `strict` (beyond the note's first lines) accepts only names that end like a Party organisation or a unit."""
    for line in text.split("\n"):
        line = line.strip()
        if BULLET.match(line) or heading_of(line) is not None:
            continue  # list items and headings name problems, not the unit
        for piece in re.split(r"[，,。；;：:\s（(“]|\d{4}", line):
            piece = re.sub(r"^(?:(?:我|本人)(?:是|在|任|担任|系)?|作为|关于|这是|这里是|我们是)", "", piece)
            piece = re.sub(r"(?:的)?(?:情况说明|基本情况|对照检查材料|对照检查|个人|班子成员|同志)$", "", piece)
            piece = re.sub(r"(?:领导班子|班子)$", "", piece) or piece
            cut = UNIT_END.match(piece)  # "县人民医院党委班子主题教育专题民主生活会" -> "县人民医院党委"
            m = re.match(r"^[\u4e00-\u9fff]{2,40}", cut.group(1) if cut else piece)
            unit = _unit_in(m.group()) if m else ""
            if (UNIT_END.match(unit) if strict else ORG.search(unit)) and not MEETING.search(unit) and len(unit) >= 3:
                return unit
    return ""


def _unit_in(piece: str) -> str:
    """Cut a person's title off a unit: "县财政局副局长" -> "县财政局"."""
    m = re.match(r"^(.{2,}?(?:党组|党委|党工委|党总支|党支部|局|公司|集团|学院|医院|学校|小学|中学|大学|支行|分局|办公室|社区|村|镇|乡|街道))"
                 r"(?:副?(?:局长|书记|主任|院长|校长|行长|经理|董事长|总经理|镇长|乡长|部长|处长|科长|所长|组长|委员|成员)|党员|干部)", piece)
    return m.group(1) if m else piece


def find_year(text: str) -> str:
    """The meeting's year: "2024年" / "（2019）" / "二〇二四年". Example: find_year("2024年度民主生活会") == "2024"."""
    m = (re.search(r"(?<!\d)((?:19|20)\d\d)\s*年度?[^，。；\n]{0,30}?(?:民主生活会|组织生活会)", text)
         or re.search(r"(?<!\d)((?:19|20)\d\d)(?=\s*年)", text) or re.search(r"(?<!\d)((?:19|20)\d\d)(?!\d)", text))
    if m:
        return m.group(1)
    m = re.search(r"([〇零一二三四五六七八九]{4})年", text)
    return "".join(str("〇一二三四五六七八九".index(c.replace("零", "〇"))) for c in m.group(1)) if m else ""


THEME = re.compile(r"(?:“[^”\n]{2,24}”)?[\u4e00-\u9fff、]{0,30}?(?:学习教育|主题教育|教育实践活动|专题教育|集中教育|专项教育|三严三实)")


def find_theme(text: str, unit: str = "") -> str:
    """The theme of the meeting as the note words it. Example: find_theme("2024年度民主生活会，主题是党纪学习教育") == "党纪学习教育"."""
    m = re.search(r"主题(?:是|为|：|:)\s*([^，,。；;\n（(]{2,40})", text)
    if m:
        return m.group(1).strip()
    for m in THEME.finditer(text):
        theme = m.group()
        if unit and theme.startswith(unit):
            theme = theme[len(unit) :]
        theme = re.sub(r"^(?:领导班子|班子|的)?(?:\d{4})?(?:年度|年)?(?:开展|围绕|以|关于|的)*", "", theme)
        if len(theme) >= 4:
            return theme
    return ""


SUBJECTS = {"班子": "班子", "个人": "我", "支部": "支部", "公司": "公司"}  # voice -> what the draft calls itself


def find_voice(text: str, unit: str, meeting: str) -> str:
    """Who the draft speaks for: 个人 (a person's own material, in 我), 支部, 公司 or 班子."""
    if len(FIRST_PERSON.findall(text)) >= 2 or re.search(r"个人(?:对照检查|检视剖析|发言|查摆|剖析)|本人", text):
        return "个人"
    if meeting == "组织生活会" and (re.search(r"(?:党支部|党总支|支部)$", unit) or re.search(r"支委|支部委员会|支部班子", text)):
        return "支部"
    if re.search(r"公司|集团|企业", unit) and not re.search(r"党委|党组|党总支|班子", unit):  # a company's 党委 is a 班子
        return "公司"
    return "班子"
