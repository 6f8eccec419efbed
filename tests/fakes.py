"""Test doubles that implement the real interfaces: chat models (ChatModel), an embedder (Embedder) and a scripted
OpenAI-compatible server; the eval suite's helpers are in evalfakes.py, the workbench's in webfakes.py."""

import hashlib
import inspect
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from pipeline.errors import Cancelled
from pipeline.model.client import Completion


@dataclass
class ScriptedChat:
    """Returns scripted replies in order (a callable reply gets the messages, and the schema when it takes
    two arguments); records every call."""

    replies: list
    name: str = "scripted"
    calls: list = field(default_factory=list)
    # a move call (a frame to fill: schema property 句子) is answered by `fill`, not from `replies`, and
    # recorded in `move_calls`: the scripts stay about links; None sends move calls to `replies` too
    fill: object = "default"
    move_calls: list = field(default_factory=list)

    def complete(self, messages, *, on_token=None, max_tokens=None, json_mode=False, schema=None, seed=None,
                 temperature=None, cancel=None, **kwargs):
        if self.fill is not None and schema and "句子" in schema.get("properties", {}):
            self.move_calls.append({"messages": messages, "schema": schema, "seed": seed, "temperature": temperature,
                                    "avoid": kwargs.get("avoid")})
            text = json.dumps({"句子": (fill_move if self.fill == "default" else self.fill)(messages, schema)},
                              ensure_ascii=False)
            return Completion(text, sum(len(m["content"]) for m in messages) // 2, len(text) // 2, 0.0, self.name)
        self.calls.append({"messages": messages, "json_mode": json_mode, "max_tokens": max_tokens, "schema": schema,
                           "seed": seed, "temperature": temperature, "avoid": kwargs.get("avoid")})
        if cancel is not None and cancel.is_set():  # as OpenAIChat: a set cancel ends the call at once
            raise Cancelled("已取消：模型调用已中止。")
        if not self.replies:
            raise AssertionError("ScriptedChat ran out of replies")
        reply = self.replies.pop(0)
        if callable(reply):
            text = reply(messages, schema) if len(inspect.signature(reply).parameters) == 2 else reply(messages)
        else:
            text = reply
        if not isinstance(text, str):
            text = json.dumps(text, ensure_ascii=False)
        if on_token:
            for piece in (text[i : i + 8] for i in range(0, len(text), 8)):
                on_token(piece)
        prompt = sum(len(m["content"]) for m in messages)
        return Completion(text, prompt // 2, len(text) // 2, 0.0, self.name)


@dataclass
class EchoChat:
    """Replies with the last user message: shows exactly what a prompt assembled."""

    name: str = "echo"

    def complete(self, messages, *, on_token=None, max_tokens=None, json_mode=False, schema=None, seed=None,
                 temperature=None, cancel=None, **kwargs):
        start = time.perf_counter()
        text = messages[-1]["content"]
        if on_token:
            on_token(text)
        return Completion(text, len(text), len(text), time.perf_counter() - start, self.name)


class HashEmbedder:
    """Deterministic bag-of-character-bigrams vectors: similar strings get similar vectors."""

    name = "hash-test"
    dim = 64

    def embed(self, texts, kind="passage"):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for a, b in zip(text, text[1:]):
                out[row, int(hashlib.md5((a + b).encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def link_openings_in(messages) -> list[str]:
    """The openings a section prompt gives its links ("问题1：<problem>，根子在于"), as the schema fixes them."""
    return [re.sub(r"（思想根子从中选一：.*）$", "", line.split("：", 1)[1]) for line in messages[-1]["content"].split("\n")
            if re.match(r"^问题\d+：", line)]


def link_roots(schema, messages) -> list[list[str]]:
    """The thinking each link of a section may name, in link order: the schema pattern's second group, or
    without a schema the list on each problem line of the prompt."""
    if schema is None:
        return [re.search(r"（思想根子从中选一：(.*)）$", line).group(1).split("；")
                for line in messages[-1]["content"].split("\n") if re.match(r"^问题\d+：", line)]
    out = []
    for item in schema["properties"]["联系"]["prefixItems"]:
        group = re.search(r"\)\(([^()]*)\)\(，", item["pattern"]).group(1)
        out.append([re.sub(r"\[(.)\]", r"\1", root) for root in group.split("|")])
    return out


FILLERS = ["按时完成", "听取意见", "跟踪问效", "安排部署", "上级检查", "基层实情"]


def fill_move(messages, schema) -> str:
    """A sentence that follows a move's grammar: each slot of the frame filled with a four-character filler."""
    pattern = schema["properties"]["句子"]["pattern"][1:-1]
    slots = re.findall(r"\(\[\^(?:\\.|[^\]\\])*\]\{\d+,\d+\}\)", pattern)  # each slot: ([^…]{lo,hi})
    for k, slot in enumerate(slots):
        pattern = pattern.replace(slot, FILLERS[k % len(FILLERS)], 1)
    return re.sub(r"\[(.)\]", r"\1", pattern)


def send_json(handler, status: int, payload, headers: dict | None = None) -> None:
    """Answer an http.server request with a JSON body (the scripted servers' one way to reply)."""
    data = json.dumps(payload, ensure_ascii=False).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def chat_body(text="好的", prompt=11, completion=2, model="fake-model", finish="stop"):
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


class FakeServer:
    """Answers POST /v1/chat/completions from `script` (one action per request; default: a canned reply)."""

    def __init__(self):
        self.script, self.requests, self.hangups = [], [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._send(self, 200, {"object": "list", "data": [{"id": "listed-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                action = server.script.pop(0) if server.script else ("json", 200, chat_body())
                kind = action[0]
                if kind == "json":
                    server._send(self, action[1], action[2], *action[3:])
                elif kind == "raw":
                    self.send_response(action[1])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(action[2])))
                    self.end_headers()
                    self.wfile.write(action[2])
                elif kind == "sleep":
                    time.sleep(action[1])
                    server._send(self, 200, chat_body())
                elif kind == "keepalive":  # an SSE stream kept open with comment lines, never a token
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    server._drip(self, b": keep-alive\n\n", action[1])
                elif kind == "trickle":  # a JSON body that never completes: one space at a time
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    server._drip(self, b" ", action[1])
                elif kind == "sse":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for piece in action[1]:
                        chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                        self.wfile.flush()
                    if action[3:] == ("cut",):
                        return  # connection closes without a finish_reason or [DONE]
                    if action[3:4] == ("stall",):
                        time.sleep(action[4])  # goes quiet mid-stream, past the client's read timeout
                        return
                    last = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                    if action[2]:
                        usage = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
                                 "choices": [], "usage": action[2]}
                        self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that gave up mid-reply is expected here
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _drip(self, handler, data, seconds):
        """Write `data` every 50 ms for `seconds` or until the client hangs up; record when it did."""
        start = time.perf_counter()
        try:
            while time.perf_counter() - start < seconds:
                handler.wfile.write(data)
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            self.hangups.append(time.perf_counter())

    _send = staticmethod(send_json)


# -- the reliability suite (issue 26): a note for `poxi draft` ----------------------------------------------------

CLI_NOTE = "临江县农业农村局党组2024年度民主生活会。查摆的问题：1. 理论学习不深入，全年中心组学习9次。2. 联系群众不够。"
