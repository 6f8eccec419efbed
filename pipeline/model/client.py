"""The chat-model seam: one `complete(messages) -> Completion` interface, one OpenAI-compatible client.

The model package is the only one that imports `openai`. A hosted API, Ollama, vLLM, a llama.cpp server and
the embedded local model (model/server.py, started lazily on loopback) all go through `OpenAIChat`, which
probes an endpoint once for what it can be held to and writes schemas and logit biases in its server's
dialect (endpoint.py, dialects.py).
Retries with exponential backoff cover timeouts, connection errors, 429 and 5xx, inside one deadline
(guard.py); other failures become a one-line Chinese ModelError naming the fix. API keys never appear in messages.

Left out: tool calls, images, multiple choices, embeddings (corpus/embed.py), response caching
(pipeline/cache.py), prompt budgeting (pipeline/tokens.py).
"""

import ipaddress
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol
from urllib.parse import urlparse

from pipeline.config import redact_url
from pipeline.errors import ModelError
from pipeline.model.dialects import STRUCTURED
from pipeline.model.endpoint import Endpoint
from pipeline.model.guard import KEY_HINT, URL_HINT, EmptyReply, Guard, call_limit, detail, final_error, redact

__all__ = ["ChatModel", "Completion", "OpenAIChat", "constraint_of", "make_chat", "needs_key", "redact"]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    model: str
    finish_reason: str | None = None  # "length" when max_tokens cut the reply short
    # attempts that failed before this reply and were retried: [{"error": str, "seconds": float}]
    attempts: list[dict] = field(default_factory=list, compare=False)


class ChatModel(Protocol):
    name: str

    def complete(self, messages: list[dict], *, on_token: Callable[[str], None] | None = None,
                 max_tokens: int | None = None, json_mode: bool = False, schema: dict | None = None,
                 seed: int | None = None, temperature: float | None = None, avoid: list[str] | None = None,
                 cancel: threading.Event | None = None) -> Completion: ...
    # schema: a JSON schema the reply must follow (implies json_mode); seed / temperature override the
    # model's defaults for this call (a retry that changes nothing at temperature 0 repeats itself).
    # avoid: words the reply should not use again, where the endpoint can be told (see OpenAIChat.complete).
    # cancel: once set, the call stops at once (the HTTP response is closed) and raises errors.Cancelled.


DEFAULT_MODELS = {  # host suffix -> model used when none is configured
    "api.openai.com": "gpt-4o-mini",
    "api.deepseek.com": "deepseek-chat",
    "dashscope.aliyuncs.com": "qwen-plus",
    "dashscope-intl.aliyuncs.com": "qwen-plus",
}


def needs_key(base_url: str) -> bool:
    """Hosted endpoints need a key; loopback, private-network and bare service names do not."""
    host = (urlparse(base_url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".local") or "." not in host:
        return False
    try:
        return not ipaddress.ip_address(host).is_private
    except ValueError:
        return True


class OpenAIChat(Endpoint):
    """ChatModel over any OpenAI-compatible endpoint. `server` (a LocalServer) is started on first use and owned.
    What the endpoint is held to and how requests are written in its dialect come from `Endpoint`."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None, model: str | None = None,
                 temperature: float = 0.3, seed: int | None = 42, timeout: float = 300.0, max_retries: int = 3,
                 server=None, backoff: float = 1.0, deadline: float | None = None,
                 frequency_penalty: float | None = None, structured: str = "auto", probe_cache=None):
        if structured not in STRUCTURED:
            raise ModelError(f"structured 应为 {'、'.join(STRUCTURED)} 之一，收到「{structured}」。")
        if server is None and not base_url:
            raise ModelError(f"没有指定模型服务地址。{URL_HINT}")
        if base_url and needs_key(base_url) and not api_key:
            raise ModelError(f"模型服务 {redact_url(base_url)} 需要 API 密钥：{KEY_HINT}。")
        self.base_url, self._key, self.server = base_url, api_key, server
        self._password = urlparse(base_url or "").password  # http://user:secret@host: never shown
        self.deadline = deadline  # seconds for a whole call, retries included; None: from max_tokens; <= 0: none
        self.model = model or (server.alias if server else _default_model(base_url))
        self.name = self.model or "auto"
        self.temperature, self.seed, self.timeout = temperature, seed, timeout
        self.max_retries, self.backoff = max_retries, backoff
        self.frequency_penalty = frequency_penalty  # sent only when set; off by default (README: poxi eval, 20 cases)
        self._client = None
        Endpoint.__init__(self, structured, probe_cache)

    def _ensure_client(self):
        if self._client is None:
            if self.server is not None:
                self.base_url = self.server.start().base_url
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._key or "none",
                                         timeout=self.timeout, max_retries=0)
            if not self.model:
                self.model = self.name = self._first_model()
        return self._client

    def _first_model(self) -> str:
        import openai

        try:
            return next(iter(self._client.models.list())).id
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._final_error(exc) from None
        except Exception:
            raise ModelError(f"无法确定模型服务 {self._url} 上的模型名：请用 --model 或 POXI_MODEL 指定。") from None

    def complete(self, messages, *, on_token=None, max_tokens=None, json_mode=False, schema=None, seed=None,
                 temperature=None, avoid=None, cancel=None) -> Completion:
        """One chat completion. `schema` and `avoid` are sent in the endpoint's dialect (`capability`):
        `avoid` becomes a negative logit bias on the tokens of each word where the endpoint takes one."""
        import httpx
        import openai

        client = self._ensure_client()
        self.capability  # probed before the first request: it decides how the request is written
        start, attempt, empty = time.perf_counter(), 0, 0
        guard = Guard(cancel, self.call_limit(max_tokens), start, self._url)
        attempts: list[dict] = []  # failed attempts that were retried, for the run record
        while True:
            emitted = []  # pieces already passed to on_token; a retry after them would repeat output
            tried = time.perf_counter()
            try:
                guard.check()
                base_seed = self.seed if seed is None else seed  # an empty reply is retried with another seed
                kwargs = self._request(messages, max_tokens, json_mode or schema is not None, stream=on_token is not None,
                                       schema=schema, seed=None if base_seed is None else base_seed + empty,
                                       temperature=temperature, avoid=avoid)
                if guard.ends is not None:
                    kwargs["timeout"] = guard.request_timeout(self.timeout)
                if on_token is None:
                    result = guard.run(lambda box: self._plain(client, kwargs, messages, start, box))
                else:
                    result = guard.run(lambda box: self._streamed(client, kwargs, messages, start, on_token, emitted, box))
                if not result.text.strip():
                    raise EmptyReply("空回复")
                result.attempts = attempts
                return result
            except openai.BadRequestError as exc:
                if emitted or not self._relax(self._detail(exc), kwargs, schema, json_mode, bool(on_token)):
                    raise ModelError(f"模型服务拒绝了请求（400）：{self._detail(exc)}") from None
                attempts.append(self._attempt(exc, tried))
            except EmptyReply as exc:
                attempts.append(self._attempt(exc, tried))
                if attempt >= self.max_retries:
                    raise ModelError(f"模型服务 {self._url} 连续 {attempt + 1} 次返回了空回复。请稍后重试，或用 --model 换一个模型。") from None
                attempt, empty = attempt + 1, empty + 1
            except (openai.APIConnectionError, openai.APIStatusError, httpx.TransportError) as exc:
                # httpx errors can escape the client while a stream is being read
                guard.check()  # a read cut short by the deadline reports the deadline
                self._raise_unless_retried(exc, attempt, emitted)
                attempts.append(self._attempt(exc, tried))
                guard.sleep(self._delay(exc, attempt))
                attempt += 1
            except (openai.APIError, ValueError, TypeError, AttributeError, KeyError) as exc:
                raise ModelError(f"模型服务 {self._url} 返回了无法解析的响应：{self._detail(exc)}") from None

    def _raise_unless_retried(self, exc, attempt: int, emitted: list) -> None:
        """Raise the ModelError a transport failure ends the call with, unless it is worth sending again."""
        status = getattr(exc, "status_code", None)
        retryable = status is None or status == 429 or status >= 500
        if self._server_died():
            # the same request at the same seed takes the same path: no identical retry, the caller
            # changes the request; the server is up again for it
            self._restart_server()
            raise ModelError(f"内置模型服务在这次调用中意外退出，已重新启动（{self._detail(exc)}）。") from None
        if emitted:
            raise ModelError(f"模型服务 {self._url} 的输出中途中断：{self._detail(exc)}。请重试。") from None
        if not retryable or attempt >= self.max_retries:
            raise self._final_error(exc) from None

    def _server_died(self) -> bool:
        process = getattr(self.server, "process", None)
        return process is not None and process.poll() is not None

    def _restart_server(self):
        """Start a crashed embedded server again and reconnect to it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.server.stop()
        return self._ensure_client()

    def call_limit(self, max_tokens: int | None) -> float | None:
        """Seconds one complete() may take in all, retries included (None: no limit); see guard.call_limit."""
        return call_limit(self.deadline, max_tokens)

    def _attempt(self, exc, tried: float) -> dict:
        return {"error": self._detail(exc) or type(exc).__name__, "status": getattr(exc, "status_code", None),
                "seconds": round(time.perf_counter() - tried, 3)}

    @property
    def _url(self) -> str | None:
        return redact_url(self.base_url)

    def _delay(self, exc, attempt: int) -> float:
        """Exponential backoff; a server's Retry-After (seconds) wins when longer. Capped at 30 s."""
        delay = self.backoff * 2**attempt
        response = getattr(exc, "response", None)
        try:
            delay = max(delay, float(response.headers.get("retry-after", 0)))
        except (AttributeError, TypeError, ValueError):
            pass
        return min(delay, 30.0)

    def _plain(self, client, kwargs, messages, start, box) -> Completion:
        with client.chat.completions.with_streaming_response.create(**kwargs) as raw:
            box["response"] = raw.http_response
            resp = raw.parse()
        if not getattr(resp, "choices", None):
            raise ValueError("响应中没有 choices")
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = resp.usage
        prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else _count(messages, text)
        return Completion(text, prompt, completion, time.perf_counter() - start, resp.model or self.model, choice.finish_reason)

    def _streamed(self, client, kwargs, messages, start, on_token, emitted, box) -> Completion:
        import httpx

        usage, finish, model = None, None, self.model
        stream = client.chat.completions.create(**kwargs)
        box["response"] = stream.response
        for chunk in stream:
            if box.get("stop"):  # the caller gave up on this call: emit nothing more
                stream.close()
                break
            usage = chunk.usage or usage
            model = chunk.model or model
            for choice in chunk.choices or []:
                piece = choice.delta.content if choice.delta else None
                if piece:
                    emitted.append(piece)
                    on_token(piece)
                finish = choice.finish_reason or finish
        text = "".join(emitted)
        if finish is None:  # the stream stopped without saying why: the connection was cut
            raise httpx.RemoteProtocolError("stream ended without finish_reason")
        if usage:
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
        else:  # e.g. llama-cpp-python ignores stream_options; it streams one chunk per token
            prompt, completion = _count(messages, text)[0], len(emitted)
        return Completion(text, prompt, completion, time.perf_counter() - start, model, finish)

    def _detail(self, exc) -> str:
        """The error's message, one line, with this endpoint's key and password blanked out."""
        return detail(exc, self._key, self._password)

    def _final_error(self, exc) -> ModelError:
        """The one-line error a call ends with once `exc` is not retried."""
        return final_error(exc, self._url, self.model, self.timeout, self.max_retries, self._detail(exc))

    def close(self) -> None:
        """Close the HTTP client and stop the owned local server, if any."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.server is not None:
            self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _default_model(base_url: str | None) -> str | None:
    host = (urlparse(base_url or "").hostname or "").lower()
    return next((m for suffix, m in DEFAULT_MODELS.items() if host == suffix or host.endswith("." + suffix)), None)


def _count(messages, text) -> tuple[int, int]:
    from pipeline.tokens import count_messages, count_tokens

    return count_messages(messages), count_tokens(text)


def make_chat(config) -> OpenAIChat:
    """The configured chat model: the embedded local model when config.base_url is None, else the endpoint."""
    common = dict(api_key=config.api_key, model=config.model, temperature=config.temperature, seed=config.seed,
                  timeout=config.timeout, max_retries=config.max_retries, deadline=config.call_deadline,
                  frequency_penalty=config.frequency_penalty, structured=config.structured,
                  probe_cache=config.cache / "probes")
    if config.base_url:
        return OpenAIChat(config.base_url, **common)
    from pipeline.model.server import local_server

    return OpenAIChat(None, server=local_server(config), **{**common, "model": None, "api_key": None})


def constraint_of(chat) -> dict | None:
    """What the chat's endpoint is held to (dialects.Capability.to_dict), for the run record and each eval
    arm; None for a test double. A probe that fails is noted here, and the first call reports the failure."""
    from pipeline.errors import PoxiError

    try:
        capability = getattr(chat, "capability", None)
    except PoxiError as exc:
        return {"label": "约束：未知", "summary": f"约束：未知（探测失败：{exc}）", "error": str(exc)}
    return capability.to_dict() if capability is not None else None
