"""Each server kind's dialect, proven against scripted endpoints on loopback that list themselves, tokenize
and answer as llama-cpp-python, llama.cpp, vLLM, Ollama and OpenAI do, and record what they were sent: the
probe's answer, its cache, the request shapes, the logit bias by id, and the chain's fallback on a server
that ignores the schema. No model, no network beyond 127.0.0.1."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fakes import HashEmbedder, ScriptedChat, link_openings_in, send_json
from pipeline.cache import CachedChat
from pipeline.config import load_config
from pipeline.model.dialects import (AVOID_BIAS, EMBEDDED, MAX_BIAS, PROBE_PICKS, PROBE_SCHEMA, Capability, bias_fields,
                               configured, detect_kind, probe_verdict, strict_schema)
from pipeline.errors import InputError
from pipeline.model.client import OpenAIChat
from pipeline.tokens import encoding

MSGS = [{"role": "user", "content": "你好"}]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["联系"],
          "properties": {"联系": {"type": "array", "minItems": 1, "maxItems": 1,
                                "prefixItems": [{"type": "string", "pattern": "^(甲)(乙|丙)$", "maxLength": 9}]}}}
LISTINGS = {  # kind -> (/v1/models item, response headers), as each server answers
    "llama-cpp-python": ({"id": "qwen", "object": "model", "owned_by": "me", "permissions": []}, {"server": "uvicorn"}),
    "llama.cpp": ({"id": "qwen.gguf", "object": "model", "created": 0, "owned_by": "llamacpp", "meta": {}},
                  {"Server": "llama.cpp"}),
    "vllm": ({"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model", "created": 0, "owned_by": "vllm",
              "max_model_len": 32768}, {"server": "uvicorn"}),
    "ollama": ({"id": "qwen2.5:7b", "object": "model", "created": 0, "owned_by": "library"}, {}),
    "openai": ({"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "system"},
               {"openai-version": "2020-10-01", "openai-organization": "user-x"}),
    "unknown": ({"id": "some-model", "object": "model"}, {}),
}


def sent_schema(kind: str, body: dict) -> dict | None:
    """The schema a server of `kind` reads from a request body (None: it finds none it knows)."""
    form = body.get("response_format") or {}
    if kind == "llama-cpp-python":
        return form.get("schema") if form.get("type") == "json_object" else None
    if kind == "llama.cpp" and body.get("json_schema"):
        return body["json_schema"]
    return (form.get("json_schema") or {}).get("schema") if form.get("type") == "json_schema" else None


class DialectServer:
    """A scripted endpoint of one server kind. `obeys`: "grammar" (a schema in its dialect holds, patterns
    included), "shape" (the JSON shape only) or "ignore" (prose whatever it is sent); `answer(body)` writes
    any reply the probe does not get. Records every request as (method, path, body)."""

    def __init__(self, kind: str, obeys: str = "grammar", answer=None, refuse_bias: bool = False):
        self.kind, self.obeys, self.answer, self.refuse_bias = kind, obeys, answer, refuse_bias
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(("GET", self.path, None))
                item, headers = LISTINGS[server.kind]
                if self.path == "/v1/models":
                    server._send(self, 200, {"object": "list", "data": [item]}, headers)
                elif self.path == "/api/version" and server.kind == "ollama":
                    server._send(self, 200, {"version": "0.6.2"})
                else:
                    server._send(self, 404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(("POST", self.path, body))
                if self.path == "/tokenize" and server.kind in ("llama.cpp", "vllm"):
                    text = body["content"] if server.kind == "llama.cpp" else body["prompt"]
                    return server._send(self, 200, {"tokens": [ord(ch) for ch in text]})  # one id a character
                if self.path != "/v1/chat/completions":
                    return server._send(self, 404, {"error": "not found"})
                if server.refuse_bias and "logit_bias" in body:
                    return server._send(self, 400, {"error": {"message": "logit_bias is not supported with this model"}})
                if server.kind == "openai" and "pattern" in json.dumps(body.get("response_format", {})):
                    return server._send(self, 400, {"error": {"message": "'pattern' is not permitted"}})
                server._send(self, 200, server._reply(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _reply(self, body: dict) -> dict:
        schema = sent_schema(self.kind, body)
        if schema and "答" in schema.get("properties", {}) and self.obeys != "ignore":  # the probe
            text = json.dumps({"答": PROBE_PICKS[0] if self.obeys == "grammar" else "我是一个助手"}, ensure_ascii=False)
        elif self.answer is not None:
            text = self.answer(body)
        else:
            text = "我是一个乐于助人的助手。"
        return {"id": "c", "object": "chat.completion", "created": 0, "model": body.get("model") or "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    _send = staticmethod(send_json)

    def chats(self) -> list[dict]:
        return [body for method, path, body in self.requests if path == "/v1/chat/completions"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    made = []

    def make(kind, **kw):
        made.append(DialectServer(kind, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def chat_for(server, tmp_path, **kw):
    model = LISTINGS[server.kind][0]["id"]
    return OpenAIChat(server.url, model=model, backoff=0.01, max_retries=0, timeout=5, probe_cache=tmp_path / "probes", **kw)


# kind -> (probe's answer: grammar, bias), what the scripted endpoint of that kind proves
ANSWERS = {"llama-cpp-python": (True, "words"), "llama.cpp": (True, "ids"), "vllm": (True, "ids"),
           "ollama": (True, None), "openai": (False, "ids")}


@pytest.mark.parametrize("kind", list(ANSWERS))
def test_the_probe_names_each_server_and_what_it_can_be_held_to(serve, tmp_path, kind):
    server = serve(kind)
    chat = chat_for(server, tmp_path)
    capability = chat.capability
    assert (capability.kind, capability.grammar, capability.bias, capability.source) == (kind, *ANSWERS[kind], "probe")
    assert chat.enforces_schema is capability.grammar
    probes = server.chats()
    if kind == "openai":  # strict mode has no pattern to try: nothing is sent, the reply is checked instead
        assert probes == [] and "pattern" in capability.note and capability.label == "约束：偏置"
    else:
        assert len(probes) == 1 and sent_schema(kind, probes[0]) == PROBE_SCHEMA and probes[0]["temperature"] == 0
    if kind == "ollama":
        assert "logit_bias" in capability.note and capability.label == "约束：语法"


def test_each_dialect_carries_the_schema_and_the_words_to_avoid_as_its_server_reads_them(serve, tmp_path):
    """The section call's request, per server: where the schema goes and how `avoid` is written."""
    sent = {}
    for kind in ANSWERS:
        server = serve(kind, answer=lambda body: '{"联系": ["甲乙"]}')
        chat_for(server, tmp_path).complete(MSGS, schema=SCHEMA, avoid=["重视", "不够"])
        sent[kind] = server.chats()[-1]
    assert sent["llama-cpp-python"]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert sent["llama-cpp-python"]["logit_bias"] == {"重视": AVOID_BIAS, "不够": AVOID_BIAS}
    assert sent["llama-cpp-python"]["logit_bias_type"] == "tokens"
    assert sent["llama.cpp"]["json_schema"] == SCHEMA and "response_format" not in sent["llama.cpp"]
    for kind in ("vllm", "ollama"):
        assert sent[kind]["response_format"] == {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA}}
    by_char = {str(ord(ch)): AVOID_BIAS for ch in "重视不够"}  # the scripted /tokenize: one id a character
    assert sent["llama.cpp"]["logit_bias"] == by_char and sent["vllm"]["logit_bias"] == by_char
    assert "logit_bias" not in sent["ollama"] and "logit_bias_type" not in sent["vllm"]
    strict = sent["openai"]["response_format"]["json_schema"]
    assert strict["strict"] is True and strict["schema"] == strict_schema(SCHEMA)
    assert "pattern" not in json.dumps(strict) and "prefixItems" not in json.dumps(strict)
    o200k = encoding("o200k_base")  # gpt-4o-mini's ids, from tiktoken
    assert sent["openai"]["logit_bias"] == {str(t): AVOID_BIAS for w in ("重视", "不够") for t in o200k.encode(w)}


def test_a_served_embedded_model_is_asked_exactly_what_the_embedded_model_is(serve, tmp_path):
    """`poxi serve` and `python -m llama_cpp.server` list themselves as llama-cpp-python: once probed, every
    request is the embedded model's, byte for byte, so greedy decoding writes the same draft."""
    served = serve("llama-cpp-python", answer=lambda body: '{"联系": ["甲乙"]}')

    class Embedded:  # the LocalServer interface OpenAIChat uses, here pointing at the same scripted server
        alias, process, base_url = "qwen", None, served.url

        def start(self):
            return self

    outside, embedded = chat_for(served, tmp_path), OpenAIChat(None, server=Embedded(), max_retries=0, timeout=5)
    for kw in ({"schema": SCHEMA, "avoid": ["重视"], "seed": 1042, "temperature": 0.7}, {"json_mode": True}, {}):
        for chat in (outside, embedded):
            chat.complete(MSGS, **kw)
    bodies = served.chats()[1:]  # after the outside chat's probe
    assert len(bodies) == 6 and bodies[0::2] == bodies[1::2] and outside.enforces_schema and embedded.enforces_schema


@pytest.mark.parametrize("kind", ["llama.cpp", "vllm"])
def test_token_ids_come_from_the_servers_own_tokenize_endpoint(serve, tmp_path, kind):
    server = serve(kind)
    chat_for(server, tmp_path).complete(MSGS, avoid=["重视"])
    asked = [body for method, path, body in server.requests if path == "/tokenize"]
    if kind == "llama.cpp":
        assert asked[0] == {"content": "重视", "add_special": False}
    else:
        assert asked[0] == {"model": "Qwen/Qwen2.5-7B-Instruct", "prompt": "重视", "add_special_tokens": False}
    assert len(asked) == 1  # the probe's check tokenized 重视: remembered, not asked again


@pytest.mark.parametrize("obeys,said", [("ignore", "忽略了 JSON schema"), ("shape", "只保证 JSON 结构")])
def test_a_server_that_does_not_hold_the_schema_is_found_out(serve, tmp_path, obeys, said):
    """llama.cpp by its listing, but the schema did not hold: the chain is told, and the user why."""
    server = serve("llama.cpp", obeys=obeys)
    chat = chat_for(server, tmp_path)
    assert chat.enforces_schema is False and chat.capability.bias == "ids"
    assert said in chat.capability.note and "校验" in chat.capability.note
    assert chat.capability.label == "约束：偏置" and said in chat.capability.describe()


def test_the_answer_is_cached_per_url_model_and_kind(serve, tmp_path):
    server = serve("vllm")
    first = chat_for(server, tmp_path).capability
    again = chat_for(server, tmp_path)
    assert again.capability == Capability(first.kind, first.grammar, first.bias, "cache", first.note)
    assert len(server.chats()) == 1  # one probe for both
    assert [path for method, path, _ in server.requests if method == "GET"] == ["/v1/models", "/v1/models"]
    other = OpenAIChat(server.url, model="another-model", max_retries=0, timeout=5, probe_cache=tmp_path / "probes")
    assert other.capability.source == "probe" and len(server.chats()) == 2  # another model: probed again
    server.kind = "llama.cpp"  # another server on the same port: its listing says so, and it is probed
    assert chat_for(server, tmp_path).capability.kind == "llama.cpp" and len(server.chats()) == 3


def test_a_configured_kind_is_taken_as_said_without_a_probe(serve, tmp_path):
    server = serve("unknown")
    chat = chat_for(server, tmp_path, structured="vllm")
    chat.complete(MSGS, schema=SCHEMA)
    assert chat.capability.source == "config" and chat.capability.kind == "vllm" and chat.enforces_schema
    assert [m for m, p, _ in server.requests if m == "GET"] == [] and len(server.chats()) == 1
    assert server.chats()[0]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert chat.capability.bias is None and "分词接口不可用" in chat.capability.note  # no /tokenize there
    none = chat_for(server, tmp_path, structured="none")
    none.complete(MSGS, schema=SCHEMA, avoid=["重视"])
    body = server.chats()[-1]
    assert body["response_format"] == {"type": "json_object"} and "logit_bias" not in body
    assert none.capability.label == "约束：无" and not none.enforces_schema


def test_an_unrecognised_server_gets_openais_dialect_and_says_so(serve, tmp_path):
    server = serve("unknown")
    chat = chat_for(server, tmp_path)
    capability = chat.capability
    assert (capability.kind, capability.grammar, capability.bias) == ("openai", False, None)
    assert "未能识别服务类型" in capability.note and "tiktoken 不认识模型" in capability.note
    assert server.chats() == []
    assert not (tmp_path / "probes").exists()  # a guess is not kept: the next run looks again


def test_a_server_that_refuses_logit_bias_is_asked_again_without_it(serve, tmp_path):
    server = serve("vllm", refuse_bias=True, answer=lambda body: "好的")
    chat = chat_for(server, tmp_path)
    assert chat.complete(MSGS, avoid=["重视"]).text == "好的"
    assert chat.complete(MSGS, avoid=["重视"]).text == "好的"
    bodies = server.chats()[1:]  # after the probe
    assert ["logit_bias" in b for b in bodies] == [True, False, False]


def test_structured_setting_is_checked(monkeypatch):
    monkeypatch.setenv("POXI_STRUCTURED", "ollama")
    assert load_config().structured == "ollama"
    monkeypatch.setenv("POXI_STRUCTURED", "grammar")
    with pytest.raises(InputError, match="structured 应为 auto、llama-cpp-python"):
        load_config()


@pytest.mark.parametrize("text,verdict", [
    ('{"答": "乙丙丁"}', "grammar"), ('{"答":"戊己庚"}', "grammar"), ('{"答": "我是助手"}', "shape"),
    ("我是一个助手。", "ignored"), ('{"answer": "乙丙丁"}', "ignored"), ('{"答": "乙丙丁", "x": 1}', "ignored"), ("", "ignored"),
])
def test_probe_verdicts(text, verdict):
    assert probe_verdict(text) == verdict


@pytest.mark.parametrize("url,models,headers,kind", [
    ("https://api.openai.com/v1", None, {}, "openai"),
    ("http://h:8080/v1", None, {"Server": "llama.cpp"}, "llama.cpp"),
    ("http://h:8000/v1", {"data": [{"owned_by": "me"}]}, {}, "llama-cpp-python"),
    ("http://h:8000/v1", {"data": [{"owned_by": "vllm"}]}, {}, "vllm"),
    ("http://h:11434/v1", {"data": [{"owned_by": "library"}]}, {}, "ollama"),
    ("http://h:8000/v1", {"data": [{"owned_by": "someone"}]}, {}, None),
    ("http://h:8000/v1", "not a listing", {}, None),
])
def test_detect_kind(url, models, headers, kind):
    assert detect_kind(url, models, headers) == kind


def test_strict_schema_keeps_the_shape_and_drops_what_strict_mode_refuses():
    strict = strict_schema(SCHEMA)
    assert strict == {"type": "object", "additionalProperties": False, "required": ["联系"],
                      "properties": {"联系": {"type": "array", "items": {"type": "string"}}}}


def test_a_bias_by_id_stops_at_the_limit():
    fields = bias_fields("ids", [f"词{i}" for i in range(400)], lambda w: [hash(w) % 10**9])
    assert len(fields["logit_bias"]) == MAX_BIAS
    assert bias_fields(None, ["重视"]) == {} and bias_fields("ids", [], lambda w: [1]) == {}


# -- the chain on a server that ignores the schema --------------------------------------------------


NOTE = """县农业农村局领导班子2024年度民主生活会，主题是党纪学习教育。
查摆的问题：
1. 理论学习流于形式，全年中心组学习12次，其中8次是读文件。
2. 调查研究不深入，班子成员全年下基层调研仅6次。
3. 3个高标准农田项目验收超时，群众有意见。
4. 落实一岗双责不到位，下属站所出现2起违规发放补贴问题。"""


TAILS = ["认为只要完成规定动作就可以了", "对群众的诉求重视不够", "习惯于坐在机关听汇报", "认为只要压力传下去就行了",
         "满足于完成上级交办的事"]


def model_reply(kind):
    """What a model writes for a section call: the schema's first root where the request carries it in the
    server's dialect and the server compiles it, else the first root the prompt lists (as a model told the
    choices would); each link with a clause of its own, another each call."""
    calls = []

    def answer(body):
        messages = body["messages"]
        if not link_openings_in(messages):  # not a section call (the probe, to a server that ignores it)
            return "我是一个乐于助人的助手。"
        listed = re.findall(r"（思想根子从中选一：(.*)）", messages[-1]["content"])
        if listed:
            roots = [line.split("；")[0] for line in listed]
        else:
            items = sent_schema(kind, body)["properties"]["联系"]["prefixItems"]
            roots = [re.sub(r"\[(.)\]", r"\1", re.search(r"\)\(([^()|]*)", i["pattern"]).group(1)) for i in items]
        calls.append(body)
        tail = TAILS[len(calls) % len(TAILS)]
        return json.dumps({"联系": [f"{o}{r}，{tail}" for o, r in zip(link_openings_in(messages), roots)]}, ensure_ascii=False)
    return answer


@pytest.mark.parametrize("obeys", ["grammar", "ignore"])
def test_the_chain_chooses_by_capability(serve, tmp_path, obeys):
    """A grammar-capable server is drafted for exactly as the embedded one (no roots in the prompt, the schema
    in its dialect); one that ignores the schema gets the roots listed and every reply validated."""
    from pipeline.drafting.chain import draft

    server = serve("llama.cpp", obeys=obeys, answer=model_reply("llama.cpp"))
    config = load_config({"home": tmp_path / "home", "embedder": HashEmbedder.name, "cache": tmp_path / "cache"})
    chat = chat_for(server, tmp_path)
    result = draft(NOTE, config, chat=chat, embedder=HashEmbedder(), angles="none")
    sections = [b for b in server.chats()[1:] if "联系" in json.dumps(b.get("json_schema") or {}, ensure_ascii=False)]
    assert sections and all(b["json_schema"]["properties"]["联系"]["prefixItems"] for b in sections)
    listed = ["思想根子从中选一" in b["messages"][-1]["content"] for b in sections]
    assert listed == [obeys == "ignore"] * len(sections)
    assert len(result.sections) >= 4 and sum(tail in result.text for tail in TAILS) >= 3
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    assert record["constraint"]["label"] == ("约束：语法+偏置" if obeys == "grammar" else "约束：偏置")


def test_poxi_draft_says_first_what_the_endpoint_is_held_to(serve, tmp_path, monkeypatch, capsys):
    import pipeline.drafting.chain
    from pipeline.console import run_draft

    def stop(*args, **kwargs):  # the drafting itself is tested above: stop once the first line is out
        raise InputError("停在这里")

    server = serve("llama.cpp", obeys="ignore")
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    monkeypatch.setattr(pipeline.drafting.chain, "draft", stop)
    config = load_config({"home": tmp_path / "home", "cache": tmp_path / "cache"})
    with pytest.raises(InputError, match="停在这里"):
        run_draft(config, str(note), chat=chat_for(server, tmp_path))
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("模型：qwen.gguf；约束：偏置（llama.cpp，探测）：服务忽略了 JSON schema：改为在提示中列出可选项")


def test_the_eval_cache_keys_on_the_dialect_an_endpoint_was_sent(tmp_path):
    """A reply written under one dialect is not replayed for another (the same model answers a grammar and a
    bare prompt differently); the embedded model's entries keep their keys, so they still hit."""
    def chat(capability, reply):
        inner = ScriptedChat([reply])
        if capability is not None:
            inner.capability = capability
        return CachedChat(inner, tmp_path, {"seed": 42})

    assert chat(EMBEDDED, "内置").complete(MSGS).text == "内置"
    assert chat(None, "未用").complete(MSGS).text == "内置"  # written before dialects: same key
    assert chat(configured("vllm"), "vLLM").complete(MSGS).text == "vLLM"
    assert chat(configured("none"), "无约束").complete(MSGS).text == "无约束"
    assert chat(configured("vllm"), "未用").complete(MSGS).text == "vLLM"
