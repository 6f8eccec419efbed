"""Prompt files: one YAML file per chain step in prompts/, with `version`, `system` and `user` templates.

Templates are Jinja2 rendered strictly: a missing variable is an error naming it, never an empty string.
Left out: prompt selection by model family (one set serves every model) and few-shot example stores.
"""

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .corpus import PROJECT_ROOT
from .errors import InputError

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
    path = Path(folder) / f"{name}.yaml"
    try:
        raw = path.read_text(encoding="utf-8")
        data = yaml.safe_load(raw)
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        return Prompt(name, f"{data['version']}+{digest}", data["system"], data["user"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(f"提示词文件「{path}」无法读取或格式不对：{exc}") from None


def prompt_names(folder: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))
