"""Prompt files: one YAML file per chain step in prompts/, with `version`, `system` and `user` templates.

Templates are Jinja2 rendered strictly: a missing variable is an error naming it, never an empty string.
Left out: prompt selection by model family (one set serves every model) and few-shot example stores.
"""

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from pipeline.config import PROJECT_ROOT
from pipeline.errors import InputError
from pipeline.textio import read_text

PROMPTS_DIR = PROJECT_ROOT / "prompts"


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str  # the file's declared version plus a short content hash, recorded in run records
    system: str
    user: str

    def render(self, **variables) -> list[dict]:
        """Chat messages for this step. Example: load_prompt("rewrite").render(sentence=…, unit=…, facts=…)"""
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
        try:
            return [
                {"role": "system", "content": env.from_string(self.system).render(**variables).strip()},
                {"role": "user", "content": env.from_string(self.user).render(**variables).strip()},
            ]
        except jinja2.UndefinedError as exc:
            raise InputError(f"提示词「{self.name}」缺少变量：{exc.message}") from None


@lru_cache(maxsize=None)
def load_prompt(name: str, folder: Path = PROMPTS_DIR) -> Prompt:
    """A prompt file of any encoding the rule files take (UTF-8, GBK/GB18030, UTF-16): textio.read_text."""
    path = Path(folder) / f"{name}.yaml"
    try:
        raw = read_text(path)
        data = yaml.safe_load(raw)
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        if not all(isinstance(data.get(k), str) for k in ("system", "user")):
            raise TypeError("system 和 user 应为文字")
        return Prompt(name, f"{data['version']}+{digest}", data["system"], data["user"])
    except InputError:  # not text at all
        raise InputError(f"提示词文件「{path}」不是文本文件或编码无法识别：请另存为 UTF-8（或 GBK）文本。") from None
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"提示词文件「{path}」无法读取或格式不对：{exc}") from None


def check_prompts(folder: Path = PROMPTS_DIR) -> None:
    """Load every prompt file in `folder` now, so a broken one fails before any drafting (InputError)."""
    import jinja2

    for name in prompt_names(folder):
        prompt = load_prompt(name, Path(folder))
        for part in ("system", "user"):
            try:
                jinja2.Environment().parse(getattr(prompt, part))
            except jinja2.TemplateSyntaxError as exc:
                raise InputError(f"提示词文件「{Path(folder) / (name + '.yaml')}」的 {part} 模板有语法错误："
                                 f"{exc.message}（第 {exc.lineno} 行）") from None


def prompt_names(folder: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))
