"""The chat-model seam: one `complete(messages) -> Completion` interface, one OpenAI-compatible client.

This is the only module that imports `openai`. A hosted API, Ollama, vLLM, a llama.cpp server and the
embedded local model (pipeline/local.py, started lazily on loopback) all go through `OpenAIChat`, which
probes an endpoint once for what it can be held to and writes schemas and logit biases in its server's
dialect (pipeline/dialects.py).
Retries with exponential backoff cover timeouts, connection errors, 429 and 5xx; other failures
become a one-line Chinese ModelError naming the fix. API keys never appear in messages.

Left out: tool calls, images, multiple choices, embeddings (pipeline/embed.py), response caching
(pipeline/cache.py), prompt budgeting (pipeline/tokens.py).
"""

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol
from urllib.parse import urlparse

from pipeline.config import redact_url
from pipeline.model.dialects import (EMBEDDED, KNOWN, PROBE_MAX_TOKENS, PROBE_MESSAGES, PROBE_SCHEMA, STRUCTURED, Capability,
                       bias_fields, configured, detect_kind, is_ollama, judge, probe_path, probe_verdict, read_probe,
                       schema_fields, server_root, with_bias, write_probe)
from pipeline.errors import Cancelled, ModelError, ModelTimeout


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
KEY_HINT = "请设置 POXI_API_KEY 或 OPENAI_API_KEY"
URL_HINT = "请检查 --base-url / POXI_BASE_URL"
DEADLINE_BASE, DEADLINE_PER_TOKEN = 180.0, 1.0  # default whole-call limit: generous even for 2 CPU cores
DEFAULT_MAX_TOKENS = 1024  # what the deadline assumes when a call sets no max_tokens


class EmptyReply(Exception):
    """The endpoint answered with no text: retried like a transient failure."""


def needs_key(base_url: str) -> bool:
    """Hosted endpoints need a key; loopback, private-network and bare service names do not."""
    host = (urlparse(base_url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".local") or "." not in host:
        return False
    try:
        return not ipaddress.ip_address(host).is_private
    except ValueError:
        return True


class OpenAIChat:
    """ChatModel over any OpenAI-compatible endpoint. `server` (a LocalServer) is started on first use and owned."""

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
        # sent only when set. On the embedded model, 0.3 cut clauses repeated inside one reply (sections clean as
        # first written 77% -> 83% on the 20 eval cases) but the model also ended more links without a clause
        # (99 of 120 against 110), and the README's example draft fell under the length floor: so it is off
        self.frequency_penalty = frequency_penalty
        self._client = None
        self._json_ok = True  # set False once the endpoint rejects response_format
        self._schema_ok = True  # set False once the endpoint rejects a JSON schema in response_format
        self._usage_ok = True  # set False once the endpoint rejects stream_options
        self._bias_ok = True  # set False once the endpoint rejects logit_bias
        # what the endpoint can be held to (dialects.py): "auto" probes it once; probe_cache keeps the answer
        self.structured, self.probe_cache = structured, probe_cache
        self._capability: Capability | None = None
        self._ids = None  # word -> token ids, for a logit bias by id
        self._probing = threading.Lock()

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
        limit = self.call_limit(max_tokens)
        ends = start + limit if limit else None
        attempts: list[dict] = []  # failed attempts that were retried, for the run record
        while True:
            emitted = []  # pieces already passed to on_token; a retry after them would repeat output
            tried = time.perf_counter()
            try:
                self._check(cancel, ends, limit)
                base_seed = self.seed if seed is None else seed  # an empty reply is retried with another seed
                kwargs = self._request(messages, max_tokens, json_mode or schema is not None, stream=on_token is not None,
                                       schema=schema, seed=None if base_seed is None else base_seed + empty,
                                       temperature=temperature, avoid=avoid)
                if ends is not None:  # a silent endpoint may not outlast the whole call
                    kwargs["timeout"] = max(0.05, min(self.timeout, ends - time.perf_counter()))
                if on_token is None:
                    result = self._guarded(lambda box: self._plain(client, kwargs, messages, start, box), cancel, ends, limit)
                else:
                    result = self._guarded(lambda box: self._streamed(client, kwargs, messages, start, on_token, emitted, box),
                                           cancel, ends, limit)
                if not result.text.strip():
                    raise EmptyReply("空回复")
                result.attempts = attempts
                return result
            except openai.BadRequestError as exc:
                if "logit_bias" in kwargs.get("extra_body", {}) and "logit" in self._detail(exc).lower() and not emitted:
                    self._bias_ok = False  # e.g. a reasoning model: the words go unsteered, the caller still checks
                elif schema is not None and self._schema_ok and not emitted:
                    self._schema_ok = False  # endpoint does not take a schema: plain JSON mode, validated by the caller
                elif (json_mode or schema is not None) and self._json_ok and not emitted:
                    self._json_ok = False  # endpoint does not know response_format: ask without it
                elif on_token and self._usage_ok and not emitted:
                    self._usage_ok = False  # endpoint does not know stream_options
                else:
                    raise ModelError(f"模型服务拒绝了请求（400）：{self._detail(exc)}") from None
                attempts.append(self._attempt(exc, tried))
            except EmptyReply as exc:
                attempts.append(self._attempt(exc, tried))
                if attempt >= self.max_retries:
                    raise ModelError(f"模型服务 {self._url} 连续 {attempt + 1} 次返回了空回复。请稍后重试，或用 --model 换一个模型。") from None
                attempt, empty = attempt + 1, empty + 1
            except (openai.APIConnectionError, openai.APIStatusError, httpx.TransportError) as exc:
                # httpx errors can escape the client while a stream is being read
                self._check(cancel, ends, limit)  # a read cut short by the deadline reports the deadline
                status = getattr(exc, "status_code", None)
                retryable = status is None or status == 429 or status >= 500
                if self._server_died():
                    # the same request at the same seed takes the same path: no identical retry, the caller
                    # changes the request; the server is up again for it
                    client = self._restart_server()
                    raise ModelError(f"内置模型服务在这次调用中意外退出，已重新启动（{self._detail(exc)}）。") from None
                if emitted:
                    raise ModelError(f"模型服务 {self._url} 的输出中途中断：{self._detail(exc)}。请重试。") from None
                if not retryable or attempt >= self.max_retries:
                    raise self._final_error(exc) from None
                attempts.append(self._attempt(exc, tried))
                self._sleep(self._delay(exc, attempt), cancel, ends, limit)
                attempt += 1
            except (openai.APIError, ValueError, TypeError, AttributeError, KeyError) as exc:
                raise ModelError(f"模型服务 {self._url} 返回了无法解析的响应：{self._detail(exc)}") from None

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

    @property
    def enforces_schema(self) -> bool:
        """Whether a JSON schema's patterns are known to hold in replies: the server compiles them to a
        grammar (the probe saw it do so). Elsewhere the caller shows the choices and validates the reply."""
        return self.capability.grammar and self._schema_ok

    @property
    def capability(self) -> Capability:
        """What this endpoint can be held to, found once: the embedded server's is known, a configured
        `structured` kind is taken as said, "auto" reads the server kind and probes it (dialects.py)."""
        with self._probing:
            if self._capability is None:
                self._capability = self._find_capability()
        return self._capability

    def _find_capability(self) -> Capability:
        if self.server is not None:
            return EMBEDDED
        client = self._ensure_client()  # the model's name is known after it: tiktoken needs it
        if self.structured != "auto":
            return self._with_bias(configured(self.structured))
        kind, sure = self._detect(client)
        path = probe_path(self.probe_cache, self._url, self.model, kind) if self.probe_cache and sure else None
        capability = read_probe(path)
        if capability is None:
            capability = judge(kind, sure, self._try_schema(client, kind) if KNOWN[kind][0] else None)
            write_probe(path, capability, self._url, self.model)  # the bias is checked again on every start: cheap
        return self._with_bias(capability)

    def _detect(self, client) -> tuple[str, bool]:
        """The server kind and whether its listing or headers said it (else: Ollama by its own API, or
        OpenAI's dialect, which any compatible server should take)."""
        import openai

        try:
            raw = client.models.with_raw_response.list()
            listing, headers = raw.http_response.json(), dict(raw.headers)
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._final_error(exc) from None
        except (openai.APIError, ValueError):
            listing, headers = None, {}
        kind = detect_kind(self.base_url, listing, headers)
        if kind is None and is_ollama(self._fetch):
            kind = "ollama"
        return kind or "openai", kind is not None

    def _fetch(self, method: str, path: str, body: dict | None) -> dict | list | None:
        """JSON from the server's own API beside /v1 (Ollama's /api/version, /tokenize), through the client's
        connection pool and key; None when it fails."""
        import httpx
        import openai

        url, options = server_root(self.base_url) + path, {"timeout": min(self.timeout, 30.0)}
        try:
            if method == "GET":
                reply = self._client.get(url, cast_to=httpx.Response, options=options)
            else:
                reply = self._client.post(url, cast_to=httpx.Response, body=body, options=options)
            return reply.json()
        except (openai.APIError, httpx.HTTPError, ValueError):
            return None

    def _try_schema(self, client, kind: str) -> str:
        """The probe: PROBE_SCHEMA in the kind's dialect; "grammar", "shape", "ignored" or "rejected"."""
        import openai

        fields = schema_fields(kind, PROBE_SCHEMA)
        kwargs = {"model": self.model, "messages": PROBE_MESSAGES, "temperature": 0, "max_tokens": PROBE_MAX_TOKENS,
                  **fields}
        if self.seed is not None:
            kwargs["seed"] = self.seed
        try:
            reply = client.chat.completions.create(**kwargs)
        except openai.BadRequestError:
            return "rejected"
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            raise self._final_error(exc) from None
        choices = getattr(reply, "choices", None) or []
        return probe_verdict((choices[0].message.content or "") if choices else "")

    def _with_bias(self, capability: Capability) -> Capability:
        """The capability with its logit bias checked (dialects.with_bias); keeps `word -> ids` where needed."""
        capability, self._ids = with_bias(capability, self.model, self._fetch)
        return capability

    def call_limit(self, max_tokens: int | None) -> float | None:
        """Seconds one complete() may take in all, retries included (None: no limit).

        Example: with no configured deadline, max_tokens=300 gives 180 + 300 = 480 s.
        """
        if self.deadline is not None:
            return self.deadline if self.deadline > 0 else None
        return DEADLINE_BASE + DEADLINE_PER_TOKEN * (max_tokens or DEFAULT_MAX_TOKENS)

    def _check(self, cancel, ends, limit) -> None:
        """Raise Cancelled once `cancel` is set, a ModelError once the call's deadline has passed."""
        if cancel is not None and cancel.is_set():
            raise Cancelled("已取消：模型调用已中止。")
        if ends is not None and time.perf_counter() >= ends - 0.05:
            raise ModelTimeout(f"模型服务 {self._url} 在 {limit:.0f} 秒内没有完成这次调用（每次调用的总时限，含重试）。"
                             "可稍后重试，或设置 POXI_CALL_DEADLINE 放宽时限。")

    def _sleep(self, delay: float, cancel, ends, limit) -> None:
        """Back off before a retry, but never past the deadline and not a moment after a cancel."""
        if ends is not None:
            delay = min(delay, max(0.0, ends - time.perf_counter()))
        if cancel is not None:
            cancel.wait(delay)
        else:
            time.sleep(delay)
        self._check(cancel, ends, limit)

    def _guarded(self, request, cancel, ends, limit) -> Completion:
        """Run one HTTP request in a worker thread, so a cancel or the deadline ends the call at once: the
        worker's socket is shut down under it and the caller gets Cancelled / ModelError without waiting."""
        if cancel is None and ends is None:
            return request({})
        box, done = {}, threading.Event()  # box: "response" (the live httpx response), "stop", "result", "error"

        def work():
            try:
                box["result"] = request(box)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="poxi-model-call", daemon=True).start()
        try:
            while not done.wait(0.05):
                self._check(cancel, ends, limit)
        except BaseException:  # cancelled, past the deadline, or Ctrl-C
            box["stop"] = True
            _shutdown(box.get("response"))
            raise
        if "error" in box:
            raise box["error"]
        return box["result"]

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

    def _request(self, messages, max_tokens, json_mode, stream, schema=None, seed=None, temperature=None,
                 avoid=None) -> dict:
        temperature = self.temperature if temperature is None else temperature
        kwargs = {"model": self.model, "messages": messages, "temperature": temperature}
        seed = self.seed if seed is None else seed
        if seed is not None:
            kwargs["seed"] = seed
        if max_tokens:
            kwargs["max_tokens"] = max_tokens
        capability, extra = self.capability, {}
        if schema is not None and self._schema_ok and capability.kind != "none":
            fields = schema_fields(capability.kind, schema)
            extra.update(fields.pop("extra_body", {}))
            kwargs.update(fields)
        elif json_mode and self._json_ok:
            kwargs["response_format"] = {"type": "json_object"}
        if self.frequency_penalty:
            kwargs["frequency_penalty"] = self.frequency_penalty
        if avoid and self._bias_ok:
            extra.update(bias_fields(capability.bias, avoid, self._ids))
        if extra:
            kwargs["extra_body"] = extra
        if stream:
            kwargs["stream"] = True
            if self._usage_ok:
                kwargs["stream_options"] = {"include_usage": True}
        return kwargs

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
        """The error's own message, one line, with the key (and anything key-shaped) blanked out."""
        body = getattr(exc, "body", None)
        text = (body.get("message") if isinstance(body, dict) else None) or str(exc) or type(exc).__name__
        return redact(redact(" ".join(text.split())[:300], self._key), self._password).rstrip("。. ")

    def _final_error(self, exc) -> ModelError:
        import openai

        url = self._url
        if isinstance(exc, openai.APITimeoutError):
            return ModelTimeout(f"模型服务 {url} 在 {self.timeout:.0f} 秒内没有响应（已重试 {self.max_retries} 次）。可稍后重试，或调大 timeout。")
        if isinstance(exc, openai.APIConnectionError) or not hasattr(exc, "status_code"):
            return ModelError(f"无法连接到模型服务 {url}：{self._detail(exc)}。{URL_HINT}")
        status = exc.status_code
        if status in (401, 403):
            return ModelError(f"模型服务 {url} 拒绝了 API 密钥（{status}）：{self._detail(exc)}。{KEY_HINT}（确认密钥有效且有权限）。")
        if status == 404:
            return ModelError(f"模型服务 {url} 找不到模型「{self.model}」或接口（404）。请用 --model / POXI_MODEL 指定该服务提供的模型，并确认地址以 /v1 结尾。")
        if status == 429:
            return ModelError(f"模型服务 {url} 限流或额度不足（429，已重试 {self.max_retries} 次）：{self._detail(exc)}。请稍后再试。")
        if status >= 500:
            return ModelError(f"模型服务 {url} 出错（{status}，已重试 {self.max_retries} 次）：{self._detail(exc)}。请稍后再试。")
        return ModelError(f"模型服务 {url} 返回错误（{status}）：{self._detail(exc)}")

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


def redact(text: str, key: str | None) -> str:
    """Blank out the key (or a URL's password) and key-like tokens (sk-…), which some servers echo back in part."""
    if key:
        text = text.replace(key, "***")
    return re.sub(r"\bsk-[A-Za-z0-9_\-*.]{3,}", "sk-***", text)


def _shutdown(response) -> None:
    """Cut a live HTTP response at the socket, which wakes a thread blocked reading it."""
    try:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, KeyError, TypeError, OSError):
        pass  # no response yet (the worker ends at its read timeout) or already closed


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
