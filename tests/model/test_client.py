"""OpenAIChat through the real openai client against a scripted OpenAI-compatible server on loopback;
make_chat wiring. No model, no network beyond 127.0.0.1. (CachedChat: tests/test_cache.py.)"""

import json
import socket
import threading
import time
import traceback

import pytest

from fakes import chat_body
from pipeline.config import load_config
from pipeline.errors import Cancelled, InputError, ModelError
from pipeline.model.dialects import AVOID_BIAS
from pipeline.model.client import Completion, OpenAIChat, make_chat, needs_key
from pipeline.tokens import count_messages

KEY = "sk-test-SECRET-0123456789abcdef"
MSGS = [{"role": "system", "content": "你是助手。"}, {"role": "user", "content": "你好"}]


@pytest.fixture
def server(endpoint):
    """The scripted server (conftest's `endpoint`), under the name these tests use."""
    return endpoint


def client(server, **kw):
    kw = {"model": "fake-model", "backoff": 0.01, "max_retries": 2, "timeout": 5, **kw}
    return OpenAIChat(server.url, **kw)


def test_plain_completion_sends_settings_and_reads_usage(server):
    result = client(server, temperature=0.2, seed=7).complete(MSGS, max_tokens=50)
    assert result == Completion("好的", 11, 2, result.seconds, "fake-model", "stop")
    body = server.requests[0]["body"]
    assert body["messages"] == MSGS and body["temperature"] == 0.2 and body["seed"] == 7 and body["max_tokens"] == 50
    assert "response_format" not in body and not body.get("stream")
    assert server.requests[0]["headers"]["authorization"] == "Bearer none"  # loopback: no key needed


def test_words_to_avoid_reach_the_embedded_server_as_words_and_no_unknown_server(server):
    """llama-cpp-python tokenizes the words itself (logit_bias_type "tokens"); a server poxi cannot name
    has logit_bias keys of its own tokenizer's ids, which poxi does not know, so it is sent no bias
    (tests/test_dialects.py: the servers whose ids poxi can get)."""
    client(server).complete(MSGS, avoid=["重视", "不够"])
    assert "logit_bias" not in server.requests[0]["body"]

    class Embedded:
        base_url, alias, process = server.url, "fake-model", None

        def start(self):
            return self

    OpenAIChat(None, server=Embedded(), backoff=0.01, max_retries=0, timeout=5).complete(MSGS, avoid=["重视", "不够"])
    body = server.requests[1]["body"]
    assert body["logit_bias"] == {"重视": AVOID_BIAS, "不够": AVOID_BIAS} and body["logit_bias_type"] == "tokens"
    assert AVOID_BIAS < 0


def test_a_frequency_penalty_is_sent_only_when_set(server):
    """Off by default, the embedded model included (it thinned the drafts); set, any endpoint gets it."""
    class Embedded:
        base_url, alias, process = server.url, "fake-model", None

        def start(self):
            return self

    client(server).complete(MSGS)
    client(server, frequency_penalty=0.5).complete(MSGS)
    OpenAIChat(None, server=Embedded(), backoff=0.01, max_retries=0, timeout=5).complete(MSGS)
    OpenAIChat(None, server=Embedded(), backoff=0.01, max_retries=0, timeout=5, frequency_penalty=0.3).complete(MSGS)
    assert [r["body"].get("frequency_penalty") for r in server.requests] == [None, 0.5, None, 0.3]


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_retries_transient_status_then_succeeds(server, status):
    server.script = [("json", status, {"error": {"message": "busy"}}), ("json", status, {"error": {"message": "busy"}})]
    result = client(server).complete(MSGS)
    assert result.text == "好的" and len(server.requests) == 3


@pytest.mark.parametrize("status,words", [(429, "限流"), (500, "出错（500")])
def test_gives_up_after_max_retries(server, status, words):
    server.script = [("json", status, {"error": {"message": "nope"}})] * 5
    with pytest.raises(ModelError, match=words):
        client(server, max_retries=2).complete(MSGS)
    assert len(server.requests) == 3


def test_backoff_grows_exponentially(server):
    server.script = [("json", 503, {"error": {"message": "x"}})] * 3
    start = time.perf_counter()
    client(server, backoff=0.1, max_retries=3).complete(MSGS)
    assert time.perf_counter() - start >= 0.1 + 0.2 + 0.4


def test_timeout_is_retried_then_reported(server):
    server.script = [("sleep", 1.5), ("sleep", 1.5)]
    with pytest.raises(ModelError, match="秒内没有响应") as info:
        client(server, timeout=0.5, max_retries=1).complete(MSGS)
    assert len(server.requests) == 2 and "已重试 1 次" in str(info.value)


def test_slow_but_within_timeout_succeeds(server):
    server.script = [("sleep", 0.3)]
    assert client(server, timeout=5).complete(MSGS).text == "好的"


@pytest.mark.parametrize("raw", [b"not json at all", b'{"id": "x", "object": "chat.completion"}', b"[]"])
def test_malformed_body_is_a_model_error(server, raw):
    server.script = [("raw", 200, raw)]
    with pytest.raises(ModelError, match="无法解析"):
        client(server).complete(MSGS)


def test_streaming_passes_tokens_and_server_usage(server):
    server.script = [("sse", ["原因", "剖析", "：学习不够"], {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25})]
    pieces = []
    result = client(server).complete(MSGS, on_token=pieces.append)
    assert pieces == ["原因", "剖析", "：学习不够"] and result.text == "原因剖析：学习不够"
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (20, 5, "stop")
    body = server.requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_streaming_without_usage_counts_chunks_and_prompt(server):
    server.script = [("sse", ["理论", "学习", "不深入"], None)]
    result = client(server).complete(MSGS, on_token=lambda p: None)
    assert result.completion_tokens == 3  # one streamed chunk per token, as llama.cpp and Ollama send
    assert result.prompt_tokens == count_messages(MSGS) > 0


def test_stream_cut_short_is_an_error_not_a_retry(server):
    server.script = [("sse", ["理论", "学习"], None, "cut")]
    pieces = []
    with pytest.raises(ModelError, match="中途中断"):
        client(server).complete(MSGS, on_token=pieces.append)
    assert pieces == ["理论", "学习"] and len(server.requests) == 1  # a retry would repeat streamed text


def test_stream_that_stalls_midway_is_a_model_error(server):
    """A read timeout inside the stream surfaces from the HTTP library under openai, not as an openai error."""
    server.script = [("sse", ["理论", "学习"], None, "stall", 3)]
    with pytest.raises(ModelError, match="中途中断"):
        client(server, timeout=0.5).complete(MSGS, on_token=lambda p: None)


def test_json_mode_sends_response_format(server):
    server.script = [("json", 200, chat_body('{"a": 1}'))]
    result = client(server).complete(MSGS, json_mode=True)
    assert json.loads(result.text) == {"a": 1}
    assert server.requests[0]["body"]["response_format"] == {"type": "json_object"}


def test_json_mode_falls_back_when_endpoint_rejects_it(server):
    server.script = [("json", 400, {"error": {"message": "response_format not supported"}}), ("json", 200, chat_body("{}"))]
    chat = client(server, max_retries=0)
    assert chat.complete(MSGS, json_mode=True).text == "{}"
    assert "response_format" in server.requests[0]["body"] and "response_format" not in server.requests[1]["body"]
    chat.complete(MSGS, json_mode=True)  # remembered: no second rejected attempt
    assert len(server.requests) == 3 and "response_format" not in server.requests[2]["body"]


def test_other_bad_request_is_reported(server):
    server.script = [("json", 400, {"error": {"message": "context length exceeded"}})]
    with pytest.raises(ModelError, match="context length exceeded"):
        client(server).complete(MSGS)
    assert len(server.requests) == 1


def test_unknown_model_404(server):
    server.script = [("json", 404, {"error": {"message": "model not found"}})]
    with pytest.raises(ModelError, match="找不到模型「fake-model」.*POXI_MODEL"):
        client(server).complete(MSGS)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_never_leaks_the_key(server, status):
    echoed = f"Incorrect API key provided: {KEY}. Also {KEY[:10]}****cdef"
    server.script = [("json", status, {"error": {"message": echoed}})]
    chat = client(server, api_key=KEY)
    with pytest.raises(ModelError, match="POXI_API_KEY 或 OPENAI_API_KEY") as info:
        chat.complete(MSGS)
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"  # the key was really sent
    shown = str(info.value) + repr(info.value) + "".join(traceback.format_exception(info.value))
    assert KEY not in shown and KEY[:10] not in shown and "SECRET" not in shown
    assert KEY not in repr(chat)  # the object holds the key but never prints it


def test_unreachable_endpoint_names_url_and_fix():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ModelError, match=f"无法连接到模型服务 {url}.*--base-url / POXI_BASE_URL"):
        OpenAIChat(url, model="m", max_retries=1, backoff=0.01, timeout=2).complete(MSGS)


def test_model_lookup_on_dead_endpoint_says_unreachable():
    with pytest.raises(ModelError, match="无法连接到模型服务 http://127.0.0.1:9/v1"):
        OpenAIChat("http://127.0.0.1:9/v1", timeout=2).complete(MSGS)


def test_model_defaults_to_first_listed(server):
    chat = OpenAIChat(server.url, backoff=0.01)
    chat.complete(MSGS)
    assert chat.name == "listed-model" and server.requests[0]["body"]["model"] == "listed-model"


@pytest.mark.parametrize("url,needed", [
    ("https://api.openai.com/v1", True), ("https://api.deepseek.com", True),
    ("https://dashscope.aliyuncs.com/compatible-mode/v1", True), ("http://127.0.0.1:8080/v1", False),
    ("http://localhost:11434/v1", False), ("http://192.168.1.20:8000/v1", False), ("http://vllm:8000/v1", False),
])
def test_which_endpoints_need_a_key(url, needed):
    assert needs_key(url) is needed


def test_hosted_endpoint_without_key_fails_fast(monkeypatch):
    monkeypatch.setenv("POXI_BASE_URL", "https://api.openai.com/v1")
    with pytest.raises(ModelError, match="请设置 POXI_API_KEY 或 OPENAI_API_KEY"):
        make_chat(load_config())


def test_make_chat_hosted_uses_config(monkeypatch):
    monkeypatch.setenv("POXI_BASE_URL", "https://api.deepseek.com")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    chat = make_chat(load_config({"seed": 5}))
    assert (chat.name, chat.seed, chat.server) == ("deepseek-chat", 5, None)
    assert KEY not in repr(chat)


def test_make_chat_local_is_lazy(monkeypatch, tmp_path):
    monkeypatch.delenv("POXI_BASE_URL")
    chat = make_chat(load_config({"threads": 1}))
    assert chat.server is not None and chat.server.process is None and chat.server.threads == 1
    assert chat.name == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    chat.close()  # stopping a server that never started is fine


# -- whole-call deadline, cancel, empty replies, retried attempts, secrets in the URL -----------------


@pytest.mark.parametrize("action,stream", [(("keepalive", 30), True), (("trickle", 30), False), (("sleep", 30), False)])
def test_deadline_ends_a_call_that_never_finishes(server, action, stream):
    """Keep-alive bytes and a trickled body reset every read timeout; only the whole-call deadline stops them."""
    server.script = [action] * 3
    start = time.perf_counter()
    with pytest.raises(ModelError, match="在 1 秒内没有完成这次调用.*POXI_CALL_DEADLINE"):
        client(server, timeout=5, deadline=1).complete(MSGS, on_token=(lambda p: None) if stream else None)
    assert time.perf_counter() - start < 2.5


def test_default_deadline_grows_with_the_reply_length():
    chat = OpenAIChat("http://127.0.0.1:9/v1", model="m")
    assert chat.call_limit(300) == 480 and chat.call_limit(1000) > chat.call_limit(300)
    assert chat.call_limit(None) > 0  # no max_tokens: still bounded
    assert OpenAIChat("http://127.0.0.1:9/v1", model="m", deadline=0).call_limit(300) is None  # 0 turns it off


def test_deadline_is_configurable(monkeypatch):
    monkeypatch.setenv("POXI_CALL_DEADLINE", "42")
    assert load_config().call_deadline == 42 and make_chat(load_config()).call_limit(300) == 42


def test_frequency_penalty_is_configurable(monkeypatch):
    monkeypatch.delenv("POXI_BASE_URL", raising=False)
    assert make_chat(load_config()).frequency_penalty is None
    monkeypatch.setenv("POXI_FREQUENCY_PENALTY", "0.3")
    assert load_config().frequency_penalty == 0.3 and make_chat(load_config()).frequency_penalty == 0.3
    monkeypatch.setenv("POXI_FREQUENCY_PENALTY", "高")
    with pytest.raises(InputError, match="frequency_penalty"):
        load_config()


@pytest.mark.parametrize("action,stream", [(("keepalive", 30), True), (("sleep", 30), False), (("trickle", 30), False)])
def test_cancel_interrupts_a_call_at_once(server, action, stream):
    server.script = [action]
    chat = client(server, timeout=20)
    chat.capability  # the endpoint is probed first (tests/test_dialects.py): the call itself is what is cancelled
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.perf_counter()
    with pytest.raises(Cancelled):
        chat.complete(MSGS, cancel=cancel, on_token=(lambda p: None) if stream else None)
    assert time.perf_counter() - start < 0.3 + 0.5
    if action[0] != "sleep":  # a response had begun: its connection is closed under the reader
        deadline = time.perf_counter() + 2
        while not server.hangups and time.perf_counter() < deadline:
            time.sleep(0.05)
        assert server.hangups and server.hangups[0] - start < 1.5


def test_cancel_during_backoff_does_not_wait_it_out(server):
    server.script = [("json", 503, {"error": {"message": "busy"}})] * 3
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.perf_counter()
    with pytest.raises(Cancelled):
        client(server, backoff=10, max_retries=3).complete(MSGS, cancel=cancel)
    assert time.perf_counter() - start < 1.0 and len(server.requests) == 1


def test_cancel_is_distinguishable_from_a_model_failure():
    assert not issubclass(Cancelled, ModelError)


@pytest.mark.parametrize("stream", [False, True])
def test_empty_reply_is_retried_and_the_attempt_kept(server, stream):
    if stream:
        server.script = [("sse", [], None), ("sse", ["", "  "], None), ("sse", ["学习", "不够"], None)]
    else:
        server.script = [("json", 200, chat_body("")), ("json", 200, chat_body("  ")), ("json", 200, chat_body("学习不够"))]
    result = client(server, max_retries=3, seed=5).complete(MSGS, on_token=(lambda p: None) if stream else None)
    assert result.text == "学习不够" and len(server.requests) == 3
    assert [a["error"] for a in result.attempts] == ["空回复", "空回复"]
    assert [r["body"]["seed"] for r in server.requests] == [5, 6, 7]  # an identical retry would repeat itself


def test_empty_replies_give_up_with_a_chinese_error(server):
    server.script = [("json", 200, chat_body(""))] * 3
    with pytest.raises(ModelError, match="连续 3 次返回了空回复"):
        client(server, max_retries=2).complete(MSGS)


def test_retried_attempts_travel_with_the_completion(server):
    server.script = [("json", 503, {"error": {"message": "busy"}}), ("json", 429, {"error": {"message": "slow down"}})]
    result = client(server).complete(MSGS)
    assert [(a["status"], a["error"]) for a in result.attempts] == [(503, "busy"), (429, "slow down")]
    assert all(a["seconds"] >= 0 for a in result.attempts)


def test_password_in_the_base_url_never_shows(server):
    port = server.url.split(":")[2].split("/")[0]
    url = f"http://alice:hunter2secret@127.0.0.1:{port}/v1"
    server.script = [("json", 401, {"error": {"message": f"bad credentials for {url}"}})]
    with pytest.raises(ModelError) as info:
        OpenAIChat(url, model="m", backoff=0.01, max_retries=0, timeout=5).complete(MSGS)
    assert "hunter2secret" not in str(info.value) and "alice:***@" in str(info.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(ModelError) as info:
        OpenAIChat(f"http://u:hunter2secret@127.0.0.1:{dead}/v1", model="m", max_retries=0, timeout=2).complete(MSGS)
    assert "hunter2secret" not in str(info.value)
    config = load_config({"base_url": url})
    assert "hunter2secret" not in json.dumps(config.redacted()) and config.redacted()["base_url"].startswith("http://alice:***@")


def test_a_crashed_embedded_server_is_restarted_and_the_call_fails_without_an_identical_retry(server):
    """A segfault in llama.cpp (seen once under a JSON-schema grammar) must not end every later call: the
    server is started again, and the call fails at once so the caller can change the request."""

    class Process:
        def __init__(self, code):
            self.code = code

        def poll(self):
            return self.code

    class Embedded:  # the LocalServer interface the chat uses; first on a dead port, after a restart on `server`
        alias, port = "embedded", None

        def __init__(self):
            self.base_url, self.process, self.starts, self.stops = "http://127.0.0.1:9/v1", None, 0, 0

        def start(self):
            self.starts += 1
            if self.starts > 1:
                self.base_url = server.url
            self.process = Process(None)
            return self

        def stop(self):
            self.stops += 1
            self.process = None

    embedded = Embedded()
    chat = OpenAIChat(None, server=embedded, backoff=0.01, max_retries=3, timeout=5)
    chat._ensure_client()
    embedded.process = Process(-11)  # it died with SIGSEGV
    with pytest.raises(ModelError, match="意外退出，已重新启动"):
        chat.complete(MSGS)
    assert embedded.starts == 2 and embedded.stops == 1 and server.requests == []  # no identical retry
    assert chat.complete(MSGS).text == "好的"  # the restarted server answers the next (changed) request
