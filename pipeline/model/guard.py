"""What keeps one model call bounded and its failures readable.

`Guard` holds one `complete()` call to its cancel event and its deadline (all attempts together): it runs each
HTTP request in a worker thread and cuts the socket under it when either fires. `final_error` turns what the
endpoint did into a one-line Chinese ModelError that names the fix, with the key blanked out (`redact`).

Left out: whether to retry and how long to back off (client.OpenAIChat.complete decides, per failure), and what
the request carries (endpoint.py).
"""

import re
import socket
import threading
import time

from pipeline.errors import Cancelled, ModelError, ModelTimeout

KEY_HINT = "请设置 POXI_API_KEY 或 OPENAI_API_KEY"
URL_HINT = "请检查 --base-url / POXI_BASE_URL"
DEADLINE_BASE, DEADLINE_PER_TOKEN = 180.0, 1.0  # default whole-call limit: generous even for 2 CPU cores
DEFAULT_MAX_TOKENS = 1024  # what the deadline assumes when a call sets no max_tokens


class EmptyReply(Exception):
    """The endpoint answered with no text: retried like a transient failure."""


def call_limit(deadline: float | None, max_tokens: int | None) -> float | None:
    """Seconds one complete() may take in all, retries included (None: no limit).

    Example: with no configured deadline, max_tokens=300 gives 180 + 300 = 480 s.
    """
    if deadline is not None:
        return deadline if deadline > 0 else None
    return DEADLINE_BASE + DEADLINE_PER_TOKEN * (max_tokens or DEFAULT_MAX_TOKENS)


class Guard:
    """One call's bounds: `cancel` (an Event or None) and `limit` seconds from `start` (None: no deadline)."""

    def __init__(self, cancel, limit: float | None, start: float, url: str | None):
        self.cancel, self.limit, self.url = cancel, limit, url
        self.ends = start + limit if limit else None

    def check(self) -> None:
        """Raise Cancelled once `cancel` is set, a ModelError once the call's deadline has passed."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("已取消：模型调用已中止。")
        if self.ends is not None and time.perf_counter() >= self.ends - 0.05:
            raise ModelTimeout(f"模型服务 {self.url} 在 {self.limit:.0f} 秒内没有完成这次调用（每次调用的总时限，含重试）。"
                               "可稍后重试，或设置 POXI_CALL_DEADLINE 放宽时限。")

    def request_timeout(self, timeout: float) -> float:
        """The HTTP timeout of the next attempt: a silent endpoint may not outlast the whole call."""
        return max(0.05, min(timeout, self.ends - time.perf_counter()))

    def sleep(self, delay: float) -> None:
        """Back off before a retry, but never past the deadline and not a moment after a cancel."""
        if self.ends is not None:
            delay = min(delay, max(0.0, self.ends - time.perf_counter()))
        if self.cancel is not None:
            self.cancel.wait(delay)
        else:
            time.sleep(delay)
        self.check()

    def run(self, request):
        """Run one HTTP request in a worker thread, so a cancel or the deadline ends the call at once: the
        worker's socket is shut down under it and the caller gets Cancelled / ModelError without waiting."""
        if self.cancel is None and self.ends is None:
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
                self.check()
        except BaseException:  # cancelled, past the deadline, or Ctrl-C
            box["stop"] = True
            _shutdown(box.get("response"))
            raise
        if "error" in box:
            raise box["error"]
        return box["result"]


def _shutdown(response) -> None:
    """Cut a live HTTP response at the socket, which wakes a thread blocked reading it."""
    try:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, KeyError, TypeError, OSError):
        pass  # no response yet (the worker ends at its read timeout) or already closed


def detail(exc, key: str | None, password: str | None) -> str:
    """The error's own message, one line, with the key, the URL's password and anything key-shaped blanked out."""
    body = getattr(exc, "body", None)
    text = (body.get("message") if isinstance(body, dict) else None) or str(exc) or type(exc).__name__
    return redact(redact(" ".join(text.split())[:300], key), password).rstrip("。. ")


def redact(text: str, key: str | None) -> str:
    """Blank out the key (or a URL's password) and key-like tokens (sk-…), which some servers echo back in part."""
    if key:
        text = text.replace(key, "***")
    return re.sub(r"\bsk-[A-Za-z0-9_\-*.]{3,}", "sk-***", text)


def final_error(exc, url: str | None, model: str | None, timeout: float, retries: int, why: str) -> ModelError:
    """The error a call ends with once `exc` is not retried (again); `why` is detail(exc)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeout(f"模型服务 {url} 在 {timeout:.0f} 秒内没有响应（已重试 {retries} 次）。可稍后重试，或调大 timeout。")
    if isinstance(exc, openai.APIConnectionError) or not hasattr(exc, "status_code"):
        return ModelError(f"无法连接到模型服务 {url}：{why}。{URL_HINT}")
    status = exc.status_code
    if status in (401, 403):
        return ModelError(f"模型服务 {url} 拒绝了 API 密钥（{status}）：{why}。{KEY_HINT}（确认密钥有效且有权限）。")
    if status == 404:
        return ModelError(f"模型服务 {url} 找不到模型「{model}」或接口（404）。请用 --model / POXI_MODEL 指定该服务提供的模型，并确认地址以 /v1 结尾。")
    if status == 429:
        return ModelError(f"模型服务 {url} 限流或额度不足（429，已重试 {retries} 次）：{why}。请稍后再试。")
    if status >= 500:
        return ModelError(f"模型服务 {url} 出错（{status}，已重试 {retries} 次）：{why}。请稍后再试。")
    return ModelError(f"模型服务 {url} 返回错误（{status}）：{why}")
