"""Helpers for the workbench tests (tests/web/): a draft function on chain.draft's contract, a slow endpoint, API
routes, the app on a live server."""

import inspect
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fakes import send_json

LOCAL = "http://127.0.0.1:8765"  # the address the app thinks it serves: Host and Origin are checked against it
KEY = "sk-server-SECRET-0123456789abcdef"
TOKEN = "team-token-0123456789abcdef"

COPIED = "对理论学习的紧迫性、重要性认识不够，思想上没有把理论学习作为“硬指标”“硬任务”，还没能做到自觉自愿持之以恒。"
WEB_NOTE = "某区数据局党支部：理论学习不够深入，联系服务群众不够经常，数据共享推进慢。"
SECTIONS = [("（一）理论学习不够深入", "（一）理论学习不够深入。" + COPIED),
            ("（二）宗旨意识有所淡化", "（二）宗旨意识有所淡化。深入基层调研次数偏少，群众反映的数据共享难题解决慢。")]


@dataclass
class Result:
    text: str
    sections: list
    check: dict
    passed: bool
    record_path: Path
    stats: dict = field(default_factory=dict)


class FakeDraft:
    """Emits the contract's events and writes a record; pauses after section 0 until `gate` is set."""

    def __init__(self):
        self.gate = threading.Event()
        self.calls = []

    def __call__(self, note, config, *, chat=None, on_event=None, cancel=None, run_id=None):
        self.calls.append({"note": note, "base_url": config.base_url, "model": config.model, "chat": chat,
                           "api_key": config.api_key, "run_id": run_id})
        record = config.runs_dir / run_id / "record.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        write = lambda **kw: record.write_text(json.dumps({"note": note, "model": "fake", "calls": [], **kw}, ensure_ascii=False), encoding="utf-8")
        write(status="running")
        on_event({"type": "step", "step": "plan", "message": "规划条目"})
        done = []
        for index, (heading, text) in enumerate(SECTIONS):
            if cancel.is_set():
                break
            on_event({"type": "section_start", "index": index, "heading": heading})
            for k in range(0, len(text), 10):
                on_event({"type": "token", "index": index, "text": text[k : k + 10]})
            on_event({"type": "section_done", "index": index, "text": text})
            done.append(text)
            if index == 0:
                self.gate.wait(10)
        text = "\n\n".join(done)
        from pipeline.checks.runner import check_text

        check = check_text(text, corpus_dir=config.corpus).to_dict()
        status = "cancelled" if cancel.is_set() else "done"
        write(status=status, text=text, check=check)
        on_event({"type": "done"})
        return Result(text, [{"text": t} for t in done], check, check["passed"], record)


def wait_finished(client, run_id, timeout=10.0, headers=None):
    after, events, deadline = 0, [], time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/api/runs/{run_id}/events", params={"after": after, "wait": 2}, headers=headers).json()
        events += body["events"]
        after = body["next"]
        if body["status"] not in ("queued", "running") and not body["events"]:
            return events
    raise AssertionError("run did not finish")


class SlowEndpoint:
    """Answers chat completions after `delay` seconds; records each request's Authorization header and the
    most requests it ever had in flight at once."""

    def __init__(self, delay: float = 0.2):
        self.delay, self.auth, self.inflight, self.most = delay, [], 0, 0
        self.lock, self.closing = threading.Lock(), threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                endpoint.send(self, {"object": "list", "data": [{"id": "slow-model", "object": "model"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with endpoint.lock:
                    endpoint.auth.append(self.headers.get("Authorization"))
                    endpoint.inflight += 1
                    endpoint.most = max(endpoint.most, endpoint.inflight)
                try:
                    endpoint.closing.wait(endpoint.delay)
                    endpoint.send(self, {"id": "c", "object": "chat.completion", "created": 0, "model": "slow-model",
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": "宗旨意识有所淡化。"}}],
                                         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
                except OSError:
                    pass  # the client hung up (a cancelled call)
                finally:
                    with endpoint.lock:
                        endpoint.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @staticmethod
    def send(handler, payload):
        send_json(handler, 200, payload)

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _accepts_cancel() -> bool:
    from pipeline.model.client import OpenAIChat

    return "cancel" in inspect.signature(OpenAIChat.complete).parameters


def endpoint_draft(note, config, *, chat=None, on_event=None, cancel=None, run_id=None):
    """Stands in for chain.draft: three model calls over the real OpenAI client (the chat the workbench made)."""
    extra = {"cancel": cancel} if _accepts_cancel() else {}
    texts = []
    for index in range(3):
        if cancel.is_set():
            break
        on_event({"type": "section_start", "index": index, "heading": f"第{index + 1}条"})
        text = chat.complete([{"role": "user", "content": note}], max_tokens=20, **extra).text
        on_event({"type": "section_done", "index": index, "text": text})
        texts.append(text)
    return Result("\n\n".join(texts), texts, {"passed": True}, True, None)


def endpoint_body(url, **kw):
    return {"note": WEB_NOTE, "backend": "endpoint", "base_url": url, **kw}


def api_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if getattr(route, "path", "").startswith("/api/") and route.path != "/api/login":
            for method in route.methods - {"HEAD"}:
                out.append((method, route.path.replace("{run_id}", "20240101-000000-aaaaaa")))
    return sorted(out)


@contextmanager
def live_server(app):
    """The app on a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)
