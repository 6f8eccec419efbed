"""A response cache around any ChatModel: identical requests are answered from disk.

The key is the SHA-256 of the model name, the request settings (temperature, seed, max_tokens,
json_mode, …) and the exact messages; the value is one JSON file per key, written atomically. A hit
replays the stored text through `on_token` and returns the original token counts, so budgets and run
records read the same; `seconds` is the (tiny) replay time. The eval suite wraps its model in this;
`--no-cache` simply does not.

Left out: expiry and size limits (delete the folder to clear it), caching failures, sharing entries
across different settings.
"""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from pipeline.model.client import ChatModel, Completion
from pipeline.textio import write_json


def cache_key(model: str, settings: dict, messages: list[dict]) -> str:
    """Stable hex key for one request. Example: cache_key("m", {"seed": 1}, [{"role": "user", "content": "hi"}])."""
    payload = json.dumps({"model": model, "settings": settings, "messages": messages},
                         ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CachedChat:
    """ChatModel that answers repeated requests from `cache_dir`; counts `.hits` and `.misses`."""

    def __init__(self, inner: ChatModel, cache_dir: Path, settings: dict | None = None):
        self.inner, self.cache_dir = inner, Path(cache_dir)
        self.settings = dict(settings or {})  # e.g. {"temperature": 0.3, "seed": 42}
        self.name = inner.name
        self.hits = self.misses = 0

    def complete(self, messages, *, on_token=None, max_tokens=None, json_mode=False, schema=None, seed=None,
                 temperature=None, avoid=None, **kwargs) -> Completion:
        settings = {**self.settings, "max_tokens": max_tokens, "json_mode": json_mode}
        for name, value in (("schema", schema), ("seed", seed), ("temperature", temperature), ("avoid", avoid)):
            if value is not None:  # only when set, so entries written before these options still hit
                settings[name] = value
        capability = self.capability
        if capability is not None and capability.source != "embedded":  # the dialect sent shapes the reply
            settings["dialect"] = [capability.kind, capability.grammar, capability.bias]
        key = cache_key(self.inner.name, settings, messages)
        path = self.cache_dir / key[:2] / f"{key}.json"
        start = time.perf_counter()
        stored = _read(path)
        if stored is not None:
            self.hits += 1
            if on_token and stored["text"]:
                on_token(stored["text"])
            return Completion(stored["text"], stored["prompt_tokens"], stored["completion_tokens"],
                              time.perf_counter() - start, stored.get("model") or self.name, stored.get("finish_reason"))
        self.misses += 1
        result = self.inner.complete(messages, on_token=on_token, max_tokens=max_tokens, json_mode=json_mode,
                                     schema=schema, seed=seed, temperature=temperature, avoid=avoid, **kwargs)
        write_json(path, {"text": result.text, "prompt_tokens": result.prompt_tokens,
                      "completion_tokens": result.completion_tokens, "model": result.model,
                      "finish_reason": getattr(result, "finish_reason", None), "seconds": result.seconds})
        return result

    @property
    def enforces_schema(self) -> bool:
        """The wrapped model's: the chain words its prompt by it (a cache that hid it made the eval list the
        roots in every section prompt, which `poxi draft` on the embedded model does not)."""
        return getattr(self.inner, "enforces_schema", False)

    @property
    def capability(self):
        """The wrapped model's dialects.Capability (None for a test double): keys entries, shown per arm."""
        return getattr(self.inner, "capability", None)

    def close(self) -> None:
        if hasattr(self.inner, "close"):
            self.inner.close()


def _read(path: Path) -> dict | None:
    """A stored entry, or None when absent. A damaged entry counts as a miss: it is named on stderr and renamed
    to `<key>.json.broken`, so the fresh reply takes its place and the damaged file stays for inspection."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("text"), str) and all(
                isinstance(data.get(k), int) for k in ("prompt_tokens", "completion_tokens")):
            return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    aside = path.with_name(path.name + ".broken")
    try:
        os.replace(path, aside)
    except OSError:
        aside = path
    print(f"提示：模型回复缓存「{path}」已损坏，已移到「{aside}」，这次重新调用模型。", file=sys.stderr)
    return None
