"""What an OpenAI-compatible endpoint can be held to, and how each server kind is asked for it.

A `Capability` names the server kind poxi speaks to (llama-cpp-python, llama.cpp's own server, vLLM, Ollama,
OpenAI, or none), whether a JSON schema's patterns hold in its replies (the server compiles the schema to a
grammar) and how words to avoid reach it (a logit bias: words the server tokenizes itself, token ids, or not
at all). `detect_kind` reads the kind off `/v1/models` and the response headers; the probe in
`endpoint.Endpoint` then sends `PROBE_SCHEMA` once, `probe_verdict` reads the reply and `judge` turns it into the
answer, cached per URL, model and kind (`read_probe` / `write_probe`); `with_bias` checks how words to avoid can
reach the model. `schema_fields` and `bias_fields` shape a request in the kind's dialect.

Left out: the HTTP itself (endpoint.py sends the probe and tokenize calls, client.py the requests) and what to do
without a grammar (the chain then lists the choices in its prompt, validates each reply and regenerates).
"""

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from pipeline.textio import write_json

KINDS = ("llama-cpp-python", "llama.cpp", "vllm", "ollama", "openai", "none")
STRUCTURED = ("auto",) + KINDS  # Config.structured: "auto" probes, a kind is taken as said
# kind -> (a schema's patterns hold in replies, how avoided words are sent: "words", "ids" or None)
KNOWN = {
    "llama-cpp-python": (True, "words"),  # logit_bias_type "tokens": the server tokenizes the words itself
    "llama.cpp": (True, "ids"),  # ids from the server's /tokenize
    "vllm": (True, "ids"),  # ids from the server's /tokenize
    "ollama": (True, None),  # its API has no logit_bias
    "openai": (False, "ids"),  # strict json_schema has no `pattern`; ids from tiktoken, for OpenAI's models only
    "none": (False, None),
}
OWNERS = {  # /v1/models `owned_by` -> kind
    "me": "llama-cpp-python", "llamacpp": "llama.cpp", "vllm": "vllm", "library": "ollama", "ollama": "ollama",
    "openai": "openai", "system": "openai", "openai-internal": "openai",
}
AVOID_BIAS = -4.0  # logit bias on a token of a word to avoid: a nudge, not a ban (a root may still need it)
MAX_BIAS = 300  # token ids one request may bias (OpenAI's limit)
PROBE_VERSION = 1  # bump when the probe or its verdict changes: cached answers are then probed again

# The probe: a question a model answers in prose, and a schema that allows only two exact strings. A server
# that compiles the schema must answer one of them; one that ignores it answers the question.
PROBE_MESSAGES = [{"role": "user", "content": "用一句话介绍你自己。"}]
PROBE_PICKS = ("乙丙丁", "戊己庚")
PROBE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["答"],
                "properties": {"答": {"type": "string", "pattern": f"^({'|'.join(PROBE_PICKS)})$"}}}
PROBE_MAX_TOKENS = 24


@dataclass(frozen=True)
class Capability:
    kind: str  # one of KINDS: the dialect requests are written in
    grammar: bool  # a schema's patterns hold in replies (compiled to a grammar by the server)
    bias: str | None  # "words", "ids" or None: how `avoid` reaches the model
    source: str = "probe"  # "embedded", "config", "probe" or "cache"
    note: str = ""  # what poxi does instead where it falls back, for the user

    @property
    def label(self) -> str:
        """Example: "约束：语法+偏置", "约束：偏置", "约束：无"."""
        parts = [name for name, on in (("语法", self.grammar), ("偏置", self.bias)) if on]
        return "约束：" + ("+".join(parts) or "无")

    def describe(self) -> str:
        """One line for the terminal. Example: "约束：语法+偏置（llama-cpp-python，探测）"."""
        where = {"embedded": "内置", "config": "按配置", "probe": "探测", "cache": "探测结果缓存"}.get(self.source, self.source)
        return f"{self.label}（{self.kind}，{where}）" + (f"：{self.note}" if self.note else "")

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label, "summary": self.describe()}


EMBEDDED = Capability("llama-cpp-python", True, "words", "embedded")


def configured(kind: str) -> Capability:
    """The capability a kind named in Config.structured has, taken as said (no probe)."""
    grammar, bias = KNOWN[kind]
    note = "" if grammar else ("不发送 JSON schema 和词语偏置，回复由 poxi 校验，不合格的重写" if kind == "none"
                               else "schema 不含正则 pattern，回复由 poxi 校验，不合格的重写")
    return Capability(kind, grammar, bias, "config", note)


def judge(kind: str, sure: bool, verdict: str | None) -> Capability:
    """The probe's answer for a server of `kind` (`sure`: its listing or headers said so) whose schema probe
    came back `verdict` (probe_verdict, or "rejected" on a 400; None: not probed, the kind compiles none)."""
    grammar, bias = KNOWN[kind]
    notes = [] if sure else ["未能识别服务类型，按 OpenAI 接口发送"]
    if verdict not in (None, "grammar"):
        grammar = False
        said = {"shape": "服务只保证 JSON 结构、不保证字段格式", "ignored": "服务忽略了 JSON schema",
                "rejected": "服务不接受 JSON schema"}[verdict]
        notes.append(f"{said}：改为在提示中列出可选项，回复由 poxi 校验，不合格的重写")
    elif kind == "openai":
        notes.append("schema 不含正则 pattern，回复由 poxi 校验，不合格的重写")
    return Capability(kind, grammar, bias, "probe", "；".join(notes))


def with_bias(capability: Capability, model: str | None, fetch) -> tuple[Capability, object]:
    """The capability with its bias checked, and `word -> token ids` where the bias goes by id: from tiktoken
    (OpenAI's models) or the server's /tokenize (`fetch`). Where neither works the words go unsteered, and
    the note says so."""
    ids, note = None, None
    if capability.bias == "ids":
        if capability.kind == "openai":
            ids = tiktoken_ids(model)
            note = None if ids else f"tiktoken 不认识模型「{model}」的分词，不做词语偏置"
        else:
            ids = server_tokenizer(capability.kind, model, fetch)
            if not ids("重视"):
                ids, note = None, "服务的分词接口不可用，不做词语偏置"
    elif KNOWN[capability.kind][1] is None and capability.kind != "none":
        note = "该服务不支持 logit_bias，不做词语偏置"
    if note is None:
        return capability, ids
    return replace(capability, bias=None, note="；".join(n for n in (capability.note, note) if n)), None


def detect_kind(base_url: str, models: dict | None, headers: dict | None = None) -> str | None:
    """The server kind that `/v1/models` (its JSON) and the response headers name, or None when they do not.
    Example: detect_kind("http://h:8000/v1", {"data": [{"id": "m", "owned_by": "vllm"}]}) == "vllm" """
    host = (urlparse(base_url).hostname or "").lower()
    if host == "api.openai.com" or host.endswith(".openai.azure.com"):
        return "openai"
    headers = {k.lower(): str(v).lower() for k, v in (headers or {}).items()}
    if "llama.cpp" in headers.get("server", ""):
        return "llama.cpp"
    data = (models or {}).get("data") if isinstance(models, dict) else None
    for item in data if isinstance(data, list) else []:
        owner = str(item.get("owned_by", "")).lower() if isinstance(item, dict) else ""
        if owner in OWNERS:
            return OWNERS[owner]
    if "openai-version" in headers or "openai-organization" in headers:
        return "openai"
    return None


def server_root(base_url: str) -> str:
    """The server's address without the OpenAI path: where /tokenize and Ollama's /api live.
    Example: server_root("http://127.0.0.1:11434/v1") == "http://127.0.0.1:11434" """
    return re.sub(r"/v1/?$", "", base_url.rstrip("/"))


def probe_verdict(text: str) -> str:
    """"grammar" when a probe reply holds PROBE_SCHEMA's pattern, "shape" when it only has its JSON shape
    (the object and its one string field), else "ignored"."""
    try:
        data = json.loads(text.strip())
    except (ValueError, AttributeError):
        return "ignored"
    if not isinstance(data, dict) or set(data) != {"答"} or not isinstance(data["答"], str):
        return "ignored"
    return "grammar" if data["答"] in PROBE_PICKS else "shape"


def schema_fields(kind: str, schema: dict) -> dict:
    """Keyword arguments for `chat.completions.create` that carry `schema` in the kind's dialect."""
    if kind == "llama-cpp-python":  # compiled to a grammar inside json_object
        return {"response_format": {"type": "json_object", "schema": schema}}
    if kind == "llama.cpp":  # the server's own field (it also reads GBNF from `grammar`)
        return {"extra_body": {"json_schema": schema}}
    if kind in ("vllm", "ollama"):  # vLLM's structured outputs; Ollama turns it into its `format`
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}}
    if kind == "openai":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "reply", "schema": strict_schema(schema), "strict": True}}}
    return {"response_format": {"type": "json_object"}}


STRICT_KEYS = {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
               "description", "$defs", "$ref"}


def strict_schema(node):
    """`node` in the subset OpenAI's strict mode takes: no pattern, lengths or tuple items (an array of the
    items' common type instead); every object closed, every property required. What is dropped is checked
    on the reply by the caller. Example: strict_schema({"type": "string", "pattern": "^a$"}) == {"type": "string"}"""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v) for k, v in node.items() if k in STRICT_KEYS and k not in ("properties", "$defs")}
    for key in ("properties", "$defs"):
        if isinstance(node.get(key), dict):
            out[key] = {name: strict_schema(sub) for name, sub in node[key].items()}
    if isinstance(node.get("prefixItems"), list) and "items" not in out:
        types = {item.get("type") for item in node["prefixItems"] if isinstance(item, dict)}
        out["items"] = {"type": types.pop()} if len(types) == 1 else {"anyOf": strict_schema(node["prefixItems"])}
    if out.get("type") == "object":
        out["additionalProperties"] = False
        out["required"] = list(out.get("properties", {}))
    return out


def bias_fields(bias: str | None, words: list[str], ids=None) -> dict:
    """The request's extra body that steers the model off `words`: the words themselves ("words",
    llama-cpp-python tokenizes them) or the ids `ids(word)` gives ("ids"), at most MAX_BIAS of them."""
    if not words or not bias:
        return {}
    if bias == "words":
        return {"logit_bias": {word: AVOID_BIAS for word in words}, "logit_bias_type": "tokens"}
    table: dict[str, float] = {}
    for word in words:
        for token in ids(word):
            if len(table) < MAX_BIAS:
                table[str(token)] = AVOID_BIAS
    return {"logit_bias": table} if table else {}


def tokenize_body(kind: str, model: str | None, word: str) -> dict:
    """The JSON a server's /tokenize takes for one word, without special tokens (llama.cpp, vLLM)."""
    if kind == "vllm":
        return {"model": model, "prompt": word, "add_special_tokens": False}
    return {"content": word, "add_special": False}


def server_tokenizer(kind: str, model: str | None, fetch):
    """`word -> token ids` through the server's /tokenize (llama.cpp, vLLM), memoized. `fetch(method, path,
    body)` returns the server's JSON or None; a word the server does not tokenize gets no ids (that request
    goes without its bias)."""
    seen: dict[str, list[int]] = {}

    def ids(word: str) -> list[int]:
        if word not in seen:
            data = fetch("POST", "/tokenize", tokenize_body(kind, model, word))
            try:
                seen[word] = [int(t["id"] if isinstance(t, dict) else t) for t in data["tokens"]]
            except (TypeError, KeyError, ValueError):
                return []
        return seen[word]

    return ids


def is_ollama(fetch) -> bool:
    """Whether the server answers Ollama's own /api/version (its /v1/models may not say so)."""
    data = fetch("GET", "/api/version", None)
    return isinstance(data, dict) and isinstance(data.get("version"), str)


def tiktoken_ids(model: str | None):
    """`word -> token ids` with tiktoken for an OpenAI model, or None when tiktoken does not know the model
    (another provider's model has other ids: biasing tiktoken's would steer it at random)."""
    import tiktoken

    from pipeline.tokens import encoding

    try:
        name = tiktoken.encoding_name_for_model(model or "")
        enc = encoding(name)
    except (KeyError, ValueError, OSError):
        return None
    return lambda word: enc.encode(word, disallowed_special=())


def probe_path(folder: Path, base_url: str, model: str | None, kind: str | None) -> Path:
    """Where the probe's answer for this URL (redacted by the caller), model and kind is kept."""
    key = hashlib.sha256(json.dumps([PROBE_VERSION, base_url, model, kind]).encode()).hexdigest()[:24]
    return Path(folder) / f"{key}.json"


def read_probe(path: Path | None) -> Capability | None:
    """A cached probe answer, or None when absent or unreadable (then the endpoint is probed again)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Capability(data["kind"], bool(data["grammar"]), data.get("bias"), "cache", data.get("note", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_probe(path: Path | None, capability: Capability, base_url: str, model: str | None) -> None:
    if path is None:
        return
    write_json(path, {**asdict(capability), "base_url": base_url, "model": model, "probed": time.time()})
