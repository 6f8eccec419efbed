"""Eval cases and gates: the YAML files under evals/cases (one per case) and evals/config.yaml.

Every problem with a file raises InputError naming the file and the field, in Chinese. Left out:
running and scoring (runner.py, score.py); the models a comparison runs (models.py).
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.errors import InputError

DEFAULT_CASES = PROJECT_ROOT / "evals" / "cases"
DEFAULT_GATES = PROJECT_ROOT / "evals" / "config.yaml"
CASE_FIELDS = ("id", "unit_kind", "year", "theme", "note", "expect")
AUDIT_MODES = ("report", "gate")


@dataclass
class Case:
    id: str
    unit_kind: str
    year: int
    theme: str
    note: str
    problems: list[str]  # each "甲|乙": addressed when any alternative is
    min_sections: int
    length: tuple[int, int]
    must_not_contain: list[str] = field(default_factory=list)
    path: str = ""


def _fail(path, why: str):
    raise InputError(f"评测用例「{path}」{why}，请按 evals/cases 里的示例修改。")


def load_gates(path: str | Path | None = None) -> dict:
    """Read evals/config.yaml into {"model", "case", "suite", "margins", "audit"[, "models"]}."""
    path = Path(path or DEFAULT_GATES)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise InputError(f"找不到评测门槛文件「{path}」，请恢复 evals/config.yaml。") from None
    except yaml.YAMLError as exc:
        raise InputError(f"评测门槛文件「{path}」不是合法的 YAML：{exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("model", "case", "suite", "margins")):
        raise InputError(f"评测门槛文件「{path}」须包含 model、case、suite、margins 四节。")
    audit = data.setdefault("audit", {"max_findings": 0, "mode": "report"})
    limit = audit.get("max_findings", 0) if isinstance(audit, dict) else None
    if not isinstance(audit, dict) or audit.get("mode", "report") not in AUDIT_MODES or not (
            isinstance(limit, int) or isinstance(limit, dict) and all(isinstance(v, int) for v in limit.values())):
        raise InputError(f"评测门槛文件「{path}」的 audit 节应为 {{max_findings: 整数或「类别: 整数」, mode: report 或 gate}}。")
    if not isinstance(data.get("models", []), list):
        raise InputError(f"评测门槛文件「{path}」的 models 应是列表，每项 {{name, base_url, model}}。")
    return data


def load_case(path: Path, defaults: dict | None = None) -> Case:
    """Read and validate one case file; every problem raises InputError naming the file and field."""
    defaults = defaults or {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        _fail(path, f"不是合法的 YAML（{str(exc).splitlines()[0]}）")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(path, f"无法读取（{exc}）")
    if not isinstance(data, dict):
        _fail(path, "应是一个映射（id、note、expect 等字段）")
    missing = [k for k in CASE_FIELDS if data.get(k) in (None, "")]
    if missing:
        _fail(path, f"缺少字段：{'、'.join(missing)}")
    unknown = set(data) - set(CASE_FIELDS)
    if unknown:
        _fail(path, f"有未知字段：{'、'.join(sorted(unknown))}")
    expect = data["expect"]
    if not isinstance(expect, dict):
        _fail(path, "的 expect 应是映射（problems、min_sections、length、must_not_contain）")
    unknown = set(expect) - {"problems", "min_sections", "length", "must_not_contain"}
    if unknown:
        _fail(path, f"的 expect 有未知字段：{'、'.join(sorted(unknown))}")
    problems = expect.get("problems")
    if not isinstance(problems, list) or not problems or not all(isinstance(p, str) and p.strip() for p in problems):
        _fail(path, "的 expect.problems 应是非空的关键词列表")
    length = expect.get("length", defaults.get("length", [900, 2600]))
    if not (isinstance(length, list) and len(length) == 2 and all(isinstance(n, int) for n in length) and length[0] < length[1]):
        _fail(path, "的 expect.length 应是 [最少字数, 最多字数]")
    sections = expect.get("min_sections", defaults.get("min_sections", 4))
    banned = expect.get("must_not_contain") or []
    if not isinstance(sections, int) or sections < 1:
        _fail(path, "的 expect.min_sections 应是正整数")
    if not isinstance(banned, list) or not all(isinstance(b, str) for b in banned):
        _fail(path, "的 expect.must_not_contain 应是字符串列表")
    if not isinstance(data["year"], int):
        _fail(path, "的 year 应是年份数字，如 2024")
    return Case(str(data["id"]), str(data["unit_kind"]), data["year"], str(data["theme"]), str(data["note"]).strip(),
                [p.strip() for p in problems], sections, (length[0], length[1]), banned, str(path))


def load_cases(path: str | Path | None = None, *, only: list[str] | None = None, defaults: dict | None = None) -> list[Case]:
    """All cases in a folder (sorted by file name) or one case file; `only` keeps those ids, in the folder's order."""
    path = Path(path or DEFAULT_CASES)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        if not files:
            raise InputError(f"评测用例文件夹「{path}」里没有 .yaml 文件，请用 --cases 指定用例文件夹。")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"找不到评测用例「{path}」，请用 --cases 指定用例文件夹或文件。")
    cases = [load_case(p, defaults) for p in files]
    seen: dict[str, str] = {}
    for case in cases:
        if case.id in seen:
            raise InputError(f"评测用例 id「{case.id}」重复：{seen[case.id]} 与 {case.path}，请改成不同的 id。")
        seen[case.id] = case.path
    if only:
        unknown = [i for i in only if i not in seen]
        if unknown:
            raise InputError(f"没有这些评测用例：{'、'.join(unknown)}。可用：{'、'.join(seen)}")
        cases = [c for c in cases if c.id in only]
    return cases
