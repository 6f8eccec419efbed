"""Which models (and prompt sets) an eval run compares, and one chat model per endpoint for the run.

A model is named: `--compare NAME=BASE_URL[@MODEL_ID]` (repeatable; `NAME=embedded` is the embedded
default), else the `models:` list in evals/config.yaml, else the one model that --model/--base-url and
POXI_* configure. Keys come from POXI_API_KEY_<NAME> (NAME upper-cased, other characters as _), then
the configured key (POXI_API_KEY / OPENAI_API_KEY). `--prompts DIR` adds a twin of every model that
drafts with that prompt folder (Config.prompts_dir). Left out: running and scoring (runner.py).
"""

import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import redact_url
from pipeline.errors import InputError

EMBEDDED = "embedded"
NAME = re.compile(r"^[\w.+-]{1,40}$")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    base_url: str | None = None  # None: the embedded local model
    model: str | None = None  # model id at the endpoint; None: the endpoint's default
    prompts_dir: Path | None = None  # None: the configured prompt folder

    @property
    def embedded(self) -> bool:
        return self.base_url is None

    def to_dict(self) -> dict:
        # written to the eval JSON and report: a password in the URL is blanked (issue 26)
        return {"name": self.name, "base_url": redact_url(self.base_url) or EMBEDDED, "model": self.model,
                "prompts_dir": str(self.prompts_dir) if self.prompts_dir else None}


def key_var(name: str) -> str:
    """The environment variable holding NAME's API key. Example: key_var("qwen-72b") == "POXI_API_KEY_QWEN_72B" """
    return "POXI_API_KEY_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _spec(name: str, url: str | None, model: str | None, where: str) -> ModelSpec:
    if not NAME.match(name or ""):
        raise InputError(f"{where}：模型名称「{name}」只能用字母、数字、汉字和 _ . + -，且不超过 40 个字。")
    url = (url or "").strip()
    if url in ("", EMBEDDED):
        if model:
            raise InputError(f"{where}：内置模型（{EMBEDDED}）不能指定 @模型名。")
        return ModelSpec(name)
    if not re.match(r"^https?://[^/\s]+", url):
        raise InputError(f"{where}：「{url}」不是 http(s):// 开头的接口地址（如 http://127.0.0.1:11434/v1），或写 {EMBEDDED}。")
    return ModelSpec(name, url.rstrip("/"), (model or "").strip() or None)


def parse_compare(value: str) -> ModelSpec:
    """One --compare value. Example: parse_compare("qwen=http://10.0.0.5:8000/v1@Qwen/Qwen2.5-7B-Instruct")"""
    name, sep, rest = value.partition("=")
    if not sep:
        raise InputError(f"--compare「{value}」应写成 名称=接口地址[@模型名]，或 名称=embedded。")
    url, model = rest, None
    if "@" in rest:
        url, model = rest.rsplit("@", 1)
    return _spec(name.strip(), url, model, f"--compare「{value}」")


def specs_from_gates(gates: dict) -> list[ModelSpec]:
    """The optional `models:` list of evals/config.yaml: [{name, base_url (or embedded), model}]."""
    out = []
    for i, item in enumerate(gates.get("models") or []):
        if not isinstance(item, dict) or not item.get("name") or set(item) - {"name", "base_url", "model"}:
            raise InputError(f"评测门槛文件的 models 第 {i + 1} 项应是 {{name, base_url, model}}。")
        out.append(_spec(str(item["name"]), item.get("base_url"), item.get("model"), f"models 第 {i + 1} 项"))
    return out


def default_spec(config) -> ModelSpec:
    """The model --model/--base-url/POXI_* configure, named after it."""
    if not config.base_url:
        return ModelSpec(EMBEDDED)
    name = re.sub(r"[^\w.+-]", "-", config.model or "default")[:40]
    return ModelSpec(name, config.base_url, config.model)


def check_prompts_dir(folder: str | Path, default: Path) -> Path:
    """A second prompt folder must hold every prompt file the default one has."""
    from pipeline.prompts import prompt_names

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"找不到提示词文件夹「{folder}」（--prompts）。")
    missing = sorted(set(prompt_names(default)) - set(prompt_names(folder)))
    if missing:
        raise InputError(f"提示词文件夹「{folder}」缺少：{'、'.join(m + '.yaml' for m in missing)}（可先复制 {default} 再修改）。")
    from pipeline.prompts import check_prompts

    check_prompts(folder)  # a broken file fails now, not after the default prompts have drafted for minutes
    return folder.resolve()


def plan_models(config, gates: dict, compare: list[str] | None = None, prompts: str | None = None) -> list[ModelSpec]:
    """Every model × prompt set of this run, in report order; names are unique."""
    specs = [parse_compare(v) for v in compare or []] or specs_from_gates(gates) or [default_spec(config)]
    if prompts:
        folder = check_prompts_dir(prompts, config.prompts_dir)
        specs = [twin for s in specs for twin in (s, replace(s, name=f"{s.name}+{folder.name}", prompts_dir=folder))]
    seen = set()
    for s in specs:
        if s.name in seen:
            raise InputError(f"模型名称「{s.name}」重复，请给每个模型不同的名称。")
        seen.add(s.name)
    return specs


def spec_config(config, spec: ModelSpec):
    """The run's Config for one model: its endpoint, model id, key and prompt folder."""
    if spec.embedded:
        cfg = replace(config, base_url=None, model=None, api_key=None)
    else:
        key = os.environ.get(key_var(spec.name)) or config.api_key
        cfg = replace(config, base_url=spec.base_url, model=spec.model, api_key=key)
    return replace(cfg, prompts_dir=spec.prompts_dir) if spec.prompts_dir else cfg


def check_keys(config, specs: list[ModelSpec]) -> None:
    """Fail before any drafting when a hosted endpoint has no key, naming the variable to set."""
    from pipeline.model.client import needs_key

    for spec in specs:
        if not spec.embedded and needs_key(spec.base_url) and not spec_config(config, spec).api_key:
            raise InputError(f"模型「{spec.name}」的接口 {redact_url(spec.base_url)} 需要 API 密钥：请设置 {key_var(spec.name)} 或 POXI_API_KEY。")


class ChatPool:
    """One chat model per endpoint, model and sampling settings, shared by the models of a run
    (a model and its prompt twin share one embedded server); closed together at the end."""

    def __init__(self, make=None):
        self._make, self._chats, self._lock = make, {}, threading.Lock()

    def get(self, cfg):
        key = (cfg.base_url, cfg.model, cfg.api_key, cfg.temperature, cfg.seed)
        with self._lock:
            if key not in self._chats and not cfg.base_url:  # one embedded server at a time (~2 GB, both cores)
                for other in [k for k in self._chats if not k[0]]:
                    chat = self._chats.pop(other)
                    if hasattr(chat, "close"):
                        chat.close()
            if key not in self._chats:
                make = self._make
                if make is None:
                    from pipeline.model.client import make_chat as make
                self._chats[key] = make(cfg)
            return self._chats[key]

    def close(self) -> None:
        for chat in self._chats.values():
            if hasattr(chat, "close"):
                chat.close()
        self._chats.clear()
