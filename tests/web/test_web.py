"""Workbench API through FastAPI's TestClient (and a real uvicorn server for curl), with a fake draft function
that follows chain.draft's contract and a slow OpenAI-compatible endpoint on loopback for the queue and keys."""

import inspect
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from docx import Document
from fastapi.testclient import TestClient

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.web.app import create_app, is_loopback, serve

LOCAL = "http://127.0.0.1:8765"  # the address the app thinks it serves: Host and Origin are checked against it
KEY = "sk-server-SECRET-0123456789abcdef"
TOKEN = "team-token-0123456789abcdef"

COPIED = "对理论学习的紧迫性、重要性认识不够，思想上没有把理论学习作为“硬指标”“硬任务”，还没能做到自觉自愿持之以恒。"
NOTE = "某区数据局党支部：理论学习不够深入，联系服务群众不够经常，数据共享推进慢。"
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


@pytest.fixture(autouse=True)
def _no_embedded_model(request, monkeypatch):
    """Outside `llm` tests, reaching the embedded model is a bug in the test: fail instead of loading 1 GB."""
    if request.node.get_closest_marker("llm") is None:
        from pipeline.model.server import LocalServer

        def refuse(self):
            raise AssertionError("a test reached the embedded model")

        monkeypatch.setattr(LocalServer, "start", refuse)


@pytest.fixture
def fake():
    return FakeDraft()


@pytest.fixture
def client(fake):
    app = create_app(load_config(), chat_factory=lambda config: "chat-for-" + str(config.base_url), draft_fn=fake)
    with TestClient(app, base_url=LOCAL) as client:
        yield client
    fake.gate.set()


def wait_finished(client, run_id, timeout=10.0, headers=None):
    after, events, deadline = 0, [], time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/api/runs/{run_id}/events", params={"after": after, "wait": 2}, headers=headers).json()
        events += body["events"]
        after = body["next"]
        if body["status"] not in ("queued", "running") and not body["events"]:
            return events
    raise AssertionError("run did not finish")


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "原因剖析起草工作台" in page.text
    assert "http" not in page.text.replace("http://127.0.0.1:8080/v1", "")  # no CDN or other outside resources
    assert client.get("/static/app.js").status_code == 200


def test_run_streams_events_and_is_recorded(client, fake):
    fake.gate.set()
    run_id = client.post("/api/runs", json={"note": NOTE}).json()["id"]
    events = wait_finished(client, run_id)
    types = [e["type"] for e in events]
    assert types[0] == "step" and types[-1] == "finished" and events[-1]["status"] == "done"
    assert types.count("section_done") == 2 and "token" in types
    assert fake.calls[0]["base_url"] is None and fake.calls[0]["chat"].inner == "chat-for-None"  # embedded by default
    assert fake.calls[0]["chat"].budget.seconds == load_config().draft_deadline  # under the draft's time limit
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "done" and COPIED in detail["text"]
    assert detail["check"]["copy"]["copied"][0]["sentence"] == COPIED
    # a reload replays the whole buffer from the start
    replay = client.get(f"/api/runs/{run_id}/events", params={"after": 0}).json()
    assert replay["events"] == events
    history = client.get("/api/runs").json()["runs"]
    assert history[0]["id"] == run_id and history[0]["status"] == "done" and history[0]["passed"] is False


def test_endpoint_model_is_passed_to_the_run(client, fake):
    fake.gate.set()
    body = {"note": NOTE, "backend": "endpoint", "base_url": "http://127.0.0.1:8080/v1", "model": "qwen", "api_key": "k"}
    run_id = client.post("/api/runs", json=body).json()["id"]
    wait_finished(client, run_id)
    assert fake.calls[0]["base_url"] == "http://127.0.0.1:8080/v1" and fake.calls[0]["model"] == "qwen"
    assert fake.calls[0]["api_key"] == "k"  # the page's own key
    bad = client.post("/api/runs", json={**body, "base_url": "ftp://x"})
    assert bad.status_code == 400 and "http://" in bad.json()["detail"]


def events_of(client, run_id, headers=None):
    return client.get(f"/api/runs/{run_id}/events", headers=headers).json()["events"]


def test_second_draft_waits_its_turn_and_cancel_removes_it_from_the_queue(client, fake):
    first = client.post("/api/runs", json={"note": NOTE}).json()
    second = client.post("/api/runs", json={"note": NOTE}).json()
    third = client.post("/api/runs", json={"note": NOTE}).json()
    assert first["status"] == "running" and second["status"] == third["status"] == "queued"
    assert second["queue"]["position"] == 1 and third["queue"]["position"] == 2
    assert third["queue"]["wait"] > second["queue"]["wait"] > 0
    history = {r["id"]: r["status"] for r in client.get("/api/runs").json()["runs"]}
    assert history[second["id"]] == "queued"
    # a queued draft leaves the queue at once and never reaches the model; the one behind it moves up
    assert client.post(f"/api/runs/{second['id']}/cancel").status_code == 200
    assert events_of(client, second["id"])[-1] == {"type": "finished", "status": "cancelled"}
    queue = [e for e in events_of(client, third["id"]) if e["type"] == "queue"]
    assert [e["position"] for e in queue] == [2, 1]
    assert client.post(f"/api/runs/{second['id']}/cancel").status_code == 404  # nothing left to cancel
    # the running one keeps its finished section
    deadline = time.time() + 5
    while "section_done" not in [e["type"] for e in events_of(client, first["id"])]:
        assert time.time() < deadline
        time.sleep(0.02)
    assert client.post(f"/api/runs/{first['id']}/cancel").status_code == 200
    fake.gate.set()
    assert wait_finished(client, first["id"])[-1] == {"type": "finished", "status": "cancelled"}
    assert client.get(f"/api/runs/{first['id']}").json()["text"] == SECTIONS[0][1]
    assert wait_finished(client, third["id"])[-1] == {"type": "finished", "status": "done"}
    assert [c["run_id"] for c in fake.calls] == [first["id"], third["id"]]


def test_failing_draft_ends_the_run_with_a_message(fake):
    def broken(note, config, **kw):
        raise RuntimeError("boom")

    with TestClient(create_app(load_config(), draft_fn=broken), base_url=LOCAL) as client:
        run_id = client.post("/api/runs", json={"note": NOTE}).json()["id"]
        events = wait_finished(client, run_id)
        assert events[-2]["type"] == "error" and "内部错误" in events[-2]["message"]
        assert events[-1]["status"] == "failed"
        assert client.get("/").status_code == 200  # the server goes on


@pytest.mark.parametrize(
    "name, data, status, message",
    [
        ("note.txt", NOTE.encode("gbk"), 200, None),
        ("note.md", b"\xef\xbb\xbf" + NOTE.encode("utf-8"), 200, None),
        ("note.txt", bytes(range(256)) * 40, 400, "不是文本文件"),
        ("note.docx", b"PK\x03\x04not really a docx", 400, "无法打开 Word 文件「note.docx」"),
        ("note.pdf", b"%PDF-1.4", 400, "不支持的文件类型"),
        ("note.txt", b"", 400, "空"),
        ("note.txt", "情况".encode() * 1_200_000, 413, "太大"),
    ],
)
def test_upload(client, name, data, status, message):
    response = client.post("/api/note", files={"file": (name, data)})
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["detail"]
        assert "poxi-upload-" not in response.json()["detail"]  # temp paths are not shown
    else:
        assert response.json()["text"] == NOTE


def test_upload_docx(client):
    buffer = io.BytesIO()
    document = Document()
    document.add_paragraph(NOTE)
    document.save(buffer)
    response = client.post("/api/note", files={"file": ("情况说明.docx", buffer.getvalue())})
    assert response.status_code == 200 and response.json()["text"] == NOTE


@pytest.mark.parametrize("note, message", [("  ", "空"), ("字" * 20_001, "太长")])
def test_bad_notes_are_refused(client, note, message):
    response = client.post("/api/runs", json={"note": note})
    assert response.status_code == 400 and message in response.json()["detail"]


def test_check_marks_the_copied_sentence(client):
    text = "（一）理论学习不够深入。" + COPIED + "我们将结合数据局实际改进。"
    result = client.post("/api/check", json={"text": text, "note": NOTE}).json()
    copied = result["copy"]["copied"]
    assert len(copied) == 1 and text[copied[0]["start"] : copied[0]["end"]] == COPIED
    assert copied[0]["source_id"].startswith("seed-2021-dangshi/")
    assert client.post("/api/check", json={"text": " "}).status_code == 400


def test_export_docx_and_md(client, tmp_path):
    text = "# 原因剖析\n\n（一）**理论学习不够深入**。正文。"
    response = client.post("/api/export", data={"text": text, "fmt": "docx"})
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    (tmp_path / "d.docx").write_bytes(response.content)
    paragraphs = [p.text for p in Document(str(tmp_path / "d.docx")).paragraphs if p.text]
    assert paragraphs == ["原因剖析", "（一）理论学习不够深入。正文。"]
    md = client.post("/api/export", data={"text": text, "fmt": "md"})
    assert md.content.decode() == text and md.headers["content-type"].startswith("text/markdown")
    assert client.post("/api/export", data={"text": "", "fmt": "docx"}).status_code == 400


def test_records_from_a_dead_server_show_as_interrupted(client):
    config = load_config()
    for run_id, status in (("20240101-000000-aaaaaa", "running"), ("20240101-000001-bbbbbb", "done")):
        path = config.runs_dir / run_id / "record.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"note": NOTE, "status": status, "text": "正文", "calls": []}), encoding="utf-8")
    (config.runs_dir / "broken").mkdir()
    (config.runs_dir / "broken" / "record.json").write_text("{not json", encoding="utf-8")
    statuses = {r["id"]: r["status"] for r in client.get("/api/runs").json()["runs"]}
    assert statuses["20240101-000000-aaaaaa"] == "interrupted" and statuses["20240101-000001-bbbbbb"] == "done"
    assert statuses["broken"] == "damaged"  # listed, not dropped (issue 26)
    assert client.get("/api/runs/20240101-000000-aaaaaa").json()["status"] == "interrupted"
    assert client.get("/api/runs/nope").status_code == 404
    assert client.get("/api/runs/..%2F..%2Fetc").status_code in (400, 404)


@pytest.mark.parametrize("host, ok", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_is_loopback(host, ok):
    assert is_loopback(host) is ok


def test_remote_host_is_refused_without_flag(capsys):
    assert main(["web", "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_port_in_use_is_a_clear_error():
    import socket

    from pipeline.errors import InputError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(InputError, match="--port"):
            serve(load_config(), host="127.0.0.1", port=taken.getsockname()[1])


def test_settings_carry_the_font_note(client):
    body = client.get("/api/settings").json()
    assert body["base_url"] == "http://127.0.0.1:9/v1"  # from the environment (conftest)
    from pipeline.export import font_note

    assert body["font_note"] == font_note()  # None where the GB/T fonts are installed


def test_finished_event_buffers_are_pruned(client, fake):
    from pipeline.web.app import KEEP_LIVE

    fake.gate.set()
    runs = client.app.state.runs
    ids = []
    for _ in range(KEEP_LIVE + 2):
        ids.append(client.post("/api/runs", json={"note": NOTE}).json()["id"])
        wait_finished(client, ids[-1])
    assert len(runs.live) <= KEEP_LIVE + 1 and ids[-1] in runs.live and ids[0] not in runs.live
    assert client.get(f"/api/runs/{ids[0]}").json()["status"] == "done"  # still there, from its record


# ---- a slow OpenAI-compatible endpoint on loopback, and a draft that talks to it through the real client ----

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
        data = json.dumps(payload, ensure_ascii=False).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def slow():
    endpoints = []

    def make(delay=0.2):
        endpoints.append(SlowEndpoint(delay))
        return endpoints[-1]

    yield make
    for endpoint in endpoints:
        endpoint.close()


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
    return {"note": NOTE, "backend": "endpoint", "base_url": url, **kw}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_three_drafts_at_once_on_a_slow_endpoint_all_finish_within_the_concurrency(slow, concurrency):
    endpoint = slow(0.3)
    app = create_app(load_config(), draft_fn=endpoint_draft, concurrency=concurrency)
    with TestClient(app, base_url=LOCAL) as client, ThreadPoolExecutor(3) as pool:
        started = list(pool.map(lambda _: client.post("/api/runs", json=endpoint_body(endpoint.url)).json(), range(3)))
        for run in started:
            assert wait_finished(client, run["id"], timeout=30)[-1] == {"type": "finished", "status": "done"}
            assert client.get(f"/api/runs/{run['id']}").json()["text"].count("宗旨意识有所淡化") == 3
    assert len(endpoint.auth) == 9
    runs = sorted(app.state.runs.live.values(), key=lambda r: r.started)
    if concurrency == 1:
        assert endpoint.most == 1 and sorted(r["status"] for r in started) == ["queued", "queued", "running"]
        assert all(a.ended <= b.started for a, b in zip(runs, runs[1:]))  # one after another
        assert any(e["type"] == "queue" and e["position"] == 2 for r in runs for e in r.events)
    else:
        assert all(r["status"] == "running" for r in started) and endpoint.most > 1


@pytest.mark.skipif(not _accepts_cancel(), reason="chat.complete has no cancel parameter yet (issue 12, defect 4)")
def test_cancel_interrupts_a_running_model_call_at_once(slow):
    endpoint = slow(60)
    app = create_app(load_config(), draft_fn=endpoint_draft)
    with TestClient(app, base_url=LOCAL) as client:
        run_id = client.post("/api/runs", json=endpoint_body(endpoint.url)).json()["id"]
        deadline = time.time() + 10
        while not endpoint.inflight:
            assert time.time() < deadline, "the model call never started"
            time.sleep(0.02)
        pressed = time.time()
        assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
        assert wait_finished(client, run_id, timeout=10)[-1] == {"type": "finished", "status": "cancelled"}
        assert time.time() - pressed < 3
        # the next draft is not held up by the one cancelled
        endpoint.delay = 0
        assert wait_finished(client, client.post("/api/runs", json=endpoint_body(endpoint.url)).json()["id"])[-1]["status"] == "done"


# ---- issue 12, defect 1: key theft through the workbench ----

@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LocalHost:8765", "[::1]:8765", "10.1.2.3:8765", "127.0.0.1"])
def test_own_and_ip_hosts_are_served(client, host):
    assert client.get("/api/runs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["rebind.example", "rebind.example:8765", "127.0.0.1.nip.io:8765", "localhost.evil.com:8765", "testserver"])
@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/runs", "/api/settings"])
def test_foreign_host_is_refused_dns_rebinding(client, host, path):
    response = client.get(path, headers={"Host": host})
    assert response.status_code == 421 and "主机名" in response.json()["detail"]
    assert NOTE not in response.text


@pytest.mark.parametrize("origin", ["http://evil.example", "http://rebind.example:8765", "null", "http://localhost:8765", "file://"])
def test_requests_from_another_origin_are_refused(client, fake, origin):
    fake.gate.set()
    for method, path, kw in (("POST", "/api/runs", {"json": {"note": NOTE}}), ("POST", "/api/check", {"json": {"text": "正文"}}),
                             ("POST", "/api/export", {"data": {"text": "正文", "fmt": "md"}}), ("GET", "/api/runs", {})):
        response = client.request(method, path, headers={"Origin": origin}, **kw)
        assert response.status_code == 403 and "其他网页" in response.json()["detail"], (method, path)
    assert fake.calls == []
    same = client.post("/api/runs", json={"note": NOTE}, headers={"Origin": LOCAL})
    assert same.status_code == 200


def test_configured_key_goes_only_to_the_configured_endpoint(slow, monkeypatch):
    listener, configured = slow(0), slow(0)
    monkeypatch.setenv("POXI_API_KEY", KEY)
    monkeypatch.setenv("POXI_BASE_URL", configured.url)
    with TestClient(create_app(load_config(), draft_fn=endpoint_draft), base_url=LOCAL) as client:
        # the issue's request through a rebound name is refused before anything runs
        refused = client.post("/api/runs", json=endpoint_body(listener.url), headers={"Host": "rebind.example"})
        assert refused.status_code == 421 and listener.auth == []
        # from the page itself (or any local user), a base_url the request chose never gets the server's key
        run_id = client.post("/api/runs", json=endpoint_body(listener.url)).json()["id"]
        assert wait_finished(client, run_id)[-1]["status"] == "done"
        assert listener.auth == ["Bearer none"] * 3
        # the page may pick the configured endpoint (however it spells it): that one gets the key
        for url in (configured.url, configured.url + "/", configured.url.replace("http://", "HTTP://")):
            assert wait_finished(client, client.post("/api/runs", json=endpoint_body(url)).json()["id"])[-1]["status"] == "done"
        assert configured.auth == [f"Bearer {KEY}"] * 9
        # or supply its own key, which goes where the page says
        own = endpoint_body(listener.url, api_key="sk-page-own-key")
        assert wait_finished(client, client.post("/api/runs", json=own).json()["id"])[-1]["status"] == "done"
        assert listener.auth[3:] == ["Bearer sk-page-own-key"] * 3
        assert all(KEY not in str(a) for a in listener.auth)
        assert KEY not in client.get("/api/settings").text


def test_a_lookalike_of_the_configured_endpoint_gets_no_key():
    from pipeline.errors import InputError
    from pipeline.web.app import run_config

    config = load_config({"base_url": "https://api.example.com/v1"})
    config = type(config)(**{**config.__dict__, "api_key": KEY})
    for url in ("https://api.example.com.evil.io/v1", "https://user@api.example.com/v1", "http://api.example.com/v1",
                "https://api.example.com/v1/../x", "https://api.example.com:444/v1"):
        with pytest.raises(InputError, match="你自己的 key"):  # hosted: refused rather than sent keyless
            run_config(config, endpoint_body(url))
        assert run_config(config, endpoint_body(url, api_key="sk-own")).api_key == "sk-own"
    assert run_config(config, endpoint_body("https://API.example.com/v1/")).api_key == KEY
    assert run_config(config, {"note": NOTE}).api_key is None  # the embedded model needs none


def test_a_hosted_endpoint_without_a_key_of_its_own_is_refused_at_once(client, fake):
    response = client.post("/api/runs", json=endpoint_body("https://api.deepseek.com/v1"))
    assert response.status_code == 400 and "你自己的 key" in response.json()["detail"]
    assert fake.calls == []


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


def curl(*args) -> tuple[int, str]:
    out = subprocess.run(["curl", "-s", "--noproxy", "*", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    body, code = out.stdout.rsplit("\n", 1)
    return int(code), body


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_the_curl_from_the_issue_gets_nothing(slow, monkeypatch):
    listener = slow(0)
    monkeypatch.setenv("POXI_API_KEY", KEY)
    with live_server(create_app(load_config(), draft_fn=endpoint_draft)) as url:
        # a past run that the foreign Host must not see, on the listener from this machine's own page: keyless
        data = json.dumps(endpoint_body(listener.url), ensure_ascii=False)
        assert curl("-H", "Content-Type: application/json", "-d", data, url + "api/runs")[0] == 200
        code, body = curl("-H", "Host: rebind.example", "-H", "Content-Type: application/json", "-d", data, url + "api/runs")
        assert code == 421 and "主机名" in json.loads(body)["detail"]
        code, body = curl("-H", "Host: rebind.example", url + "api/runs")
        assert code == 421 and NOTE[:10] not in body
        code, body = curl("-H", "Origin: http://evil.example", "-H", "Content-Type: application/json", "-d", data, url + "api/runs")
        assert code == 403
        deadline = time.time() + 10
        while len(listener.auth) < 3:
            assert time.time() < deadline, "the local run did not reach the listener"
            time.sleep(0.05)
    time.sleep(0.2)
    assert not any(KEY in str(a) for a in listener.auth) and len(listener.auth) == 3  # only the local run, keyless


# ---- issue 11, part 3: access for a team ----

def api_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if getattr(route, "path", "").startswith("/api/") and route.path != "/api/login":
            for method in route.methods - {"HEAD"}:
                out.append((method, route.path.replace("{run_id}", "20240101-000000-aaaaaa")))
    return sorted(out)


@pytest.fixture
def team(fake):
    app = create_app(load_config(), draft_fn=fake, token=TOKEN, port=8765)
    with TestClient(app, base_url=LOCAL) as client:
        yield client
    fake.gate.set()


@pytest.mark.parametrize("headers", [{}, {"X-Poxi-Token": "wrong-token-0123456789"}, {"Authorization": "Bearer wrong"},
                                     {"Cookie": "poxi_token_8765=wrong"}, {"X-Poxi-Token": TOKEN[:-1]}])
def test_every_api_route_needs_the_token(team, fake, headers):
    routes = api_routes(team.app)
    assert len(routes) >= 9
    for method, path in routes:
        response = team.request(method, path, headers=headers, json={"note": NOTE})
        assert response.status_code == 401 and "访问令牌" in response.json()["detail"], (method, path)
    assert fake.calls == []
    assert team.get("/").status_code == 200 and team.get("/static/app.js").status_code == 200  # the page holds no data


def test_token_by_header_or_by_the_cookie_from_login(team, fake):
    fake.gate.set()
    writer = {"X-Poxi-Writer": quote("张三")}
    assert team.get("/api/settings", headers={"X-Poxi-Token": TOKEN}).json()["team"] is True
    assert team.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}", **writer}).status_code == 200
    assert team.post("/api/login", json={"token": "wrong"}).status_code == 401
    login = team.post("/api/login", json={"token": TOKEN})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("poxi_token_8765=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    run_id = team.post("/api/runs", json={"note": NOTE}, headers=writer).json()["id"]  # the cookie alone now
    assert wait_finished(team, run_id, headers=writer)[-1]["status"] == "done"


def test_loopback_without_allow_remote_stays_token_free(monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    assert main(["web", "--port", str(_free_port())]) == 0
    assert served["host"] == "127.0.0.1" and served["app"].state.guard.token is None
    assert "token" not in capsys.readouterr().out
    assert not (load_config().home / "web-token").exists()
    with TestClient(served["app"], base_url=LOCAL) as client:
        assert client.get("/api/runs").status_code == 200 and client.get("/api/settings").json()["team"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_allow_remote_makes_a_token_prints_it_once_and_keeps_it(monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    port = str(_free_port())
    assert main(["web", "--host", "0.0.0.0", "--allow-remote", "--port", port]) == 0
    path = load_config().home / "web-token"
    token = path.read_text().strip()
    assert len(token) >= 24 and stat.S_IMODE(path.stat().st_mode) == 0o600
    out = capsys.readouterr().out
    assert f"#token={token}" in out and out.count(token) == 1
    assert served["app"].state.guard.token == token and socket.gethostname().lower() in served["app"].state.guard.names
    assert main(["web", "--host", "0.0.0.0", "--allow-remote", "--port", port]) == 0  # second start: kept, not shown
    out = capsys.readouterr().out
    assert token not in out and str(path) in out and served["app"].state.guard.token == token
    assert main(["web", "--host", "0.0.0.0", "--allow-remote", "--port", port, "--token", "our-office-token-2024"]) == 0
    assert path.read_text().strip() == "our-office-token-2024" == served["app"].state.guard.token
    assert main(["web", "--host", "0.0.0.0", "--allow-remote", "--port", port, "--token", "short"]) == 2
    assert "至少 12 个字符" in capsys.readouterr().err
    with TestClient(served["app"], base_url=LOCAL) as client:
        assert client.get("/api/settings").status_code == 401
        assert client.get("/api/settings", headers={"X-Poxi-Token": "our-office-token-2024"}).status_code == 200


def test_server_names_are_accepted_hosts(fake):
    app = create_app(load_config(), draft_fn=fake, server_names=["poxi.office.lan"])
    with TestClient(app, base_url="http://poxi.office.lan") as client:
        assert client.get("/api/runs").status_code == 200
        assert client.post("/api/check", json={"text": "正文"}, headers={"Origin": "https://poxi.office.lan"}).status_code == 200
        assert client.get("/api/runs", headers={"Host": "other.office.lan"}).status_code == 421


def test_runs_are_kept_per_writer_unless_shared(team, fake):
    fake.gate.set()
    auth = {"X-Poxi-Token": TOKEN}
    zhang, li = {**auth, "X-Poxi-Writer": quote("张三")}, {**auth, "X-Poxi-Writer": quote("李四")}
    nameless = team.post("/api/runs", json={"note": NOTE}, headers=auth)
    assert nameless.status_code == 400 and "名字" in nameless.json()["detail"]
    run_id = team.post("/api/runs", json={"note": NOTE}, headers=zhang).json()["id"]
    assert wait_finished(team, run_id, headers=zhang)[-1]["status"] == "done"
    assert [r["id"] for r in team.get("/api/runs", headers=zhang).json()["runs"]] == [run_id]

    def li_sees() -> bool:
        listed = [r["id"] for r in team.get("/api/runs", headers=li).json()["runs"]]
        codes = {team.get(f"/api/runs/{run_id}", headers=li).status_code,
                 team.get(f"/api/runs/{run_id}/events", headers=li).status_code}
        assert (run_id in listed) == (codes == {200}) and len(codes) == 1
        return run_id in listed

    assert not li_sees()
    assert team.post(f"/api/runs/{run_id}/share", json={"shared": True}, headers=li).status_code == 404
    assert team.post(f"/api/runs/{run_id}/share", json={"shared": True}, headers=zhang).json() == {"id": run_id, "shared": True}
    assert li_sees()
    detail = team.get(f"/api/runs/{run_id}", headers=li).json()
    assert detail["writer"] == "张三" and detail["mine"] is False and COPIED in detail["text"]
    assert team.post(f"/api/runs/{run_id}/share", json={"shared": False}, headers=li).status_code == 404  # only the writer
    assert team.post(f"/api/runs/{run_id}/share", json={"shared": False}, headers=zhang).status_code == 200
    assert not li_sees()
    # ownership outlives the server: a new one reads it from the run's folder
    with TestClient(create_app(load_config(), token=TOKEN), base_url=LOCAL) as again:
        assert again.get(f"/api/runs/{run_id}", headers=li).status_code == 404
        assert again.get(f"/api/runs/{run_id}", headers=zhang).json()["text"]


def test_a_writer_cannot_cancel_anothers_run(team, fake):
    auth = {"X-Poxi-Token": TOKEN}
    zhang, li = {**auth, "X-Poxi-Writer": quote("张三")}, {**auth, "X-Poxi-Writer": quote("李四")}
    running = team.post("/api/runs", json={"note": NOTE}, headers=zhang).json()["id"]
    queued = team.post("/api/runs", json={"note": NOTE}, headers=zhang).json()["id"]
    for run_id in (running, queued):
        assert team.post(f"/api/runs/{run_id}/cancel", headers=li).status_code == 404
    fake.gate.set()
    assert wait_finished(team, queued, headers=zhang)[-1]["status"] == "done"


@pytest.mark.parametrize("name, ok", [("张三", True), ("  王 五 ", True), ("字" * 41, False), ("a/b", False), ("%FF%FE", False)])
def test_writer_names(team, name, ok):
    headers = {"X-Poxi-Token": TOKEN, "X-Poxi-Writer": name if "%" in name else quote(name)}
    assert (team.get("/api/runs", headers=headers).status_code == 200) is ok


# ---- issue 12, item 8: malformed requests get 422 / 413 in Chinese, never 500 ----

def chinese(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text)) and not re.search(r"Field required|Input should|There was an error|Not Found|maximum size", text)


@pytest.mark.parametrize("body", [{"note": 12345}, {"note": ["理论学习"]}, {"note": {"a": 1}},
                                  {"note": NOTE, "backend": "endpoint", "base_url": 5},
                                  {"note": NOTE, "backend": 3}, {"note": NOTE, "backend": "gpu"}])
def test_malformed_run_bodies_get_422_in_chinese(client, fake, body):
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422 and chinese(response.json()["detail"]), response.text
    assert fake.calls == []


@pytest.mark.parametrize("path", ["/api/runs", "/api/check", "/api/login", "/api/runs/x/share"])
@pytest.mark.parametrize("content", ["[1, 2]", "not json", "", '"note"'])
def test_bodies_that_are_not_json_objects_get_422_in_chinese(client, path, content):
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and chinese(response.json()["detail"]), response.text


def test_other_errors_are_chinese_too(client):
    assert client.post("/api/check", json={"text": 5}).status_code == 422
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and chinese(missing.json()["detail"])
    wrong = client.get("/api/check")
    assert wrong.status_code == 405 and chinese(wrong.json()["detail"])
    no_file = client.post("/api/note")
    assert no_file.status_code == 422 and chinese(no_file.json()["detail"])


def test_oversized_bodies_get_413_in_chinese(client):
    big = client.post("/api/runs", json={"note": "字" * 600_000})
    assert big.status_code == 413 and chinese(big.json()["detail"])
    export = client.post("/api/export", data={"text": "字" * 400_000, "fmt": "md"})
    assert export.status_code == 413 and chinese(export.json()["detail"])

    def chunks():  # no Content-Length: the limit counts the bytes that arrive
        boundary = b"--b0undary"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="note.txt"\r\n\r\n'
        for _ in range(40):
            yield "情况".encode() * 20_000
        yield b"\r\n" + boundary + b"--\r\n"

    streamed = client.post("/api/note", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert streamed.status_code == 413 and chinese(streamed.json()["detail"]), streamed.text


# ---- issue 11, part 2: the embedded model, shared (run by the integrator, not in the fast suite) ----

def _llama_servers() -> list[int]:
    """Child llama.cpp servers of this process: (pid, RSS in KB)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and "llama_cpp.server" in (proc / "cmdline").read_bytes().decode(errors="replace"):
                status = (proc / "status").read_text()
                ppid = int(re.search(r"PPid:\s+(\d+)", status).group(1))
                rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
                if ppid == os.getpid():
                    out.append((int(proc.name), rss))
        except (OSError, AttributeError):
            continue
    return out


@pytest.mark.llm
def test_three_drafts_at_once_share_one_embedded_model_server():
    """Three workbench drafts on the embedded model at once: all finish, one llama.cpp process, memory bounded.
    Prints the peak memory and the time for the closing note of issue 11."""
    from pipeline.model.server import free_port  # noqa: F401  (the embedded model must be installed)

    note = (Path(__file__).resolve().parents[2] / "evals" / "example-note.txt").read_text(encoding="utf-8")
    app = create_app(load_config())
    peak = {"servers": 0, "rss_kb": 0}
    done = threading.Event()

    def watch():
        while not done.is_set():
            servers = _llama_servers()
            peak["servers"] = max(peak["servers"], len(servers))
            peak["rss_kb"] = max(peak["rss_kb"], sum(rss for _, rss in servers))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.time()
    with TestClient(app, base_url=LOCAL) as client:
        ids = [client.post("/api/runs", json={"note": note}).json()["id"] for _ in range(3)]
        finished = [wait_finished(client, run_id, timeout=3600)[-1]["status"] for run_id in ids]
    done.set()
    watcher.join()
    seconds = time.time() - start
    print(f"\n3 drafts, embedded model: {seconds:.0f} s in all, peak {peak['servers']} llama.cpp process(es), "
          f"peak RSS {peak['rss_kb'] / 1024:.0f} MB")
    assert finished == ["done"] * 3
    assert peak["servers"] == 1 and peak["rss_kb"] < 3 * 1024 * 1024
    assert _llama_servers() == []  # stopped with the app


def test_embedded_drafts_share_one_model_server_that_outlives_each_chat(monkeypatch):
    """Without starting llama.cpp: every embedded run's chat gets the same server; closing a chat leaves it up."""
    import pipeline.model.server
    from pipeline.web.runs import Run, Runs

    made = []

    class FakeLocal:
        alias, base_url, process = "fake-alias", "http://127.0.0.1:9/v1", None

        def __init__(self):
            self.starts = self.stops = 0
            made.append(self)

        def start(self):
            self.starts += 1
            self.process = type("P", (), {"poll": lambda self: None})()
            return self

        def stop(self):
            self.stops += 1

    monkeypatch.setattr(pipeline.model.server, "local_server", lambda config, **kw: FakeLocal())
    config = load_config()
    runs = Runs(config)
    embedded = type(config)(**{**config.__dict__, "base_url": None})
    chats = [runs.chat_for(Run(f"r{i}", NOTE, "m", "embedded", config=embedded)) for i in range(3)]
    servers = [chat.server.start() for chat in chats]
    assert servers[0] is servers[1] is servers[2] is runs.server
    for chat in chats:
        chat.close()
    assert runs.server.stops == 0 and [m for m in made if m.starts] == [runs.server]  # one server ever started
    runs.close()
    assert runs.server.stops == 1
    endpoint = runs.chat_for(Run("e", NOTE, "m", "endpoint", config=load_config()))
    assert endpoint.server is None and endpoint.base_url == "http://127.0.0.1:9/v1"


# -- issue 26: what a hostile probe of the workbench found ---------------------------------------------------

URL_SECRET = "pw-url-SECRET-4242"


def test_settings_never_show_the_endpoint_password(fake):
    """A: /api/settings gave every token holder the password in POXI_BASE_URL, in base_url and in endpoints."""
    from dataclasses import replace

    fake.gate.set()
    url = f"http://urluser:{URL_SECRET}@127.0.0.1:18081/v1"
    app = create_app(replace(load_config(), base_url=url), chat_factory=lambda config: "chat", draft_fn=fake)
    with TestClient(app, base_url=LOCAL) as client:
        settings = client.get("/api/settings")
        assert URL_SECRET not in settings.text
        shown = settings.json()["base_url"]
        assert shown == "http://urluser:***@127.0.0.1:18081/v1" and settings.json()["endpoints"] == [shown]
        # the page sends back what it was shown: the run still goes to the configured URL, password and all
        run_id = client.post("/api/runs", json={"note": NOTE, "backend": "endpoint", "base_url": shown}).json()["id"]
        wait_finished(client, run_id)
    assert fake.calls[0]["base_url"] == url


@pytest.mark.parametrize("origin, status", [("http://vm:9999", 403), ("http://vm", 403), ("https://vm:8443", 403),
                                            ("http://127.0.0.1:9999", 403), ("http://vm:8765", 200)])
def test_a_page_on_another_port_of_a_server_name_is_refused(fake, origin, status):
    """B: with a server name, the Origin check looked at the name only, so a page on vm:9999 could drive the API
    on vm:8765 with the token cookie (SameSite does not separate ports)."""
    fake.gate.set()
    app = create_app(load_config(), draft_fn=fake, token=TOKEN, server_names=["vm"], port=8765)
    with TestClient(app, base_url="http://vm:8765", cookies={"poxi_token_8765": TOKEN}) as client:
        response = client.post("/api/runs", json={"note": NOTE}, headers={"Origin": origin, "X-Poxi-Writer": quote("张三")})
        assert response.status_code == status, response.text
        if status == 200:
            wait_finished(client, response.json()["id"], headers={"X-Poxi-Writer": quote("张三")})
    assert len(fake.calls) == (status == 200)


def test_a_damaged_record_shows_in_the_history_as_damaged(client, fake):
    """C on the workbench: a truncated record is listed and opened as damaged, not hidden."""
    fake.gate.set()
    run_id = client.post("/api/runs", json={"note": NOTE}).json()["id"]
    wait_finished(client, run_id)
    path = load_config().runs_dir / run_id / "record.json"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    client.app.state.runs.live.clear()  # as after a restart: only the file is left
    rows = client.get("/api/runs").json()["runs"]
    assert [(r["id"], r["status"]) for r in rows] == [(run_id, "damaged")]
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "damaged" and "JSON" in detail["error"]


def test_no_route_and_no_file_gives_away_a_planted_secret(monkeypatch, capfd, tmp_path):
    """3: the server's API key and a password in its endpoint URL reach no response, event, record, cache or log
    line, while a real draft runs against an endpoint that echoes both back in its errors."""
    import pipeline.corpus.embed
    from dataclasses import replace

    from fakes import HashEmbedder
    from tests.fakes import FakeServer

    key, password = "sk-planted-SECRET-9f8e7d6c5b4a", "pw-planted-SECRET-1a2b3c"
    endpoint = FakeServer()
    echo = {"error": {"message": f"invalid key {key} for urluser:{password}"}}
    endpoint.script = [("json", 500, echo)] * 40
    monkeypatch.setattr(pipeline.corpus.embed, "make_embedder", lambda *a, **k: HashEmbedder())
    url = endpoint.url.replace("http://", f"http://urluser:{password}@")
    config = replace(load_config({"embedder": HashEmbedder.name}), base_url=url, api_key=key, max_retries=1,
                     cache=tmp_path / "cache")
    app = create_app(config, token=TOKEN, port=8765)
    writer = {"X-Poxi-Token": TOKEN, "X-Poxi-Writer": quote("张三")}
    seen = []
    try:
        with TestClient(app, base_url=LOCAL) as client:
            def call(method, path, **kw):
                response = client.request(method, path, headers=writer, **kw)
                seen.append(f"{method} {path} {response.status_code} {dict(response.headers)} {response.text}")
                return response

            call("GET", "/")
            settings = call("GET", "/api/settings").json()
            started = call("POST", "/api/runs", json={"note": NOTE, "backend": "endpoint", "base_url": settings["base_url"]})
            run_id = started.json()["id"]
            events = wait_finished(client, run_id, timeout=120, headers=writer)
            seen.append(json.dumps(events, ensure_ascii=False))
            assert events[-1]["status"] == "failed" and any(e["type"] == "error" for e in events)
            for method, path in api_routes(app):
                call(method, path.replace("20240101-000000-aaaaaa", run_id), json={"note": NOTE, "text": "（一）正文。"})
            call("POST", "/api/login", json={"token": TOKEN})
            call("POST", "/api/export", data={"text": "（一）正文。", "fmt": "md"})
            call("POST", "/api/note", files={"file": ("n.txt", NOTE.encode(), "text/plain")})
    finally:
        endpoint.httpd.shutdown()
        endpoint.httpd.server_close()
    assert len(endpoint.requests) >= 1  # the draft really reached the endpoint (and got the key)
    assert endpoint.requests[0]["headers"]["authorization"]  # with a secret (httpx sends the URL's user as Basic)
    files = [p for folder in (config.home, config.cache) for p in Path(folder).rglob("*") if p.is_file()
             and p.suffix not in (".sqlite3", ".bin", ".gguf", ".pickle", ".tiktoken")]
    assert any(p.name == "record.json" for p in files)
    out, err = capfd.readouterr()
    for secret in (key, password, "urluser:pw"):
        for text in seen + [out, err]:
            assert secret not in text, text[:300]
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("content", ["{\"writer\": \"张", "[]", "{\"writer\": 7}"])
def test_a_damaged_owner_file_is_named_in_the_log(tmp_path, capsys, content):
    """2: web.json that is cut short or of the wrong shape was silently read as the nameless writer's."""
    from pipeline.web.guard import read_owner

    (tmp_path / "web.json").write_text(content, encoding="utf-8")
    assert read_owner(tmp_path) == {"writer": "", "shared": False}
    assert str(tmp_path / "web.json") in capsys.readouterr().err
    assert read_owner(tmp_path / "none") == {"writer": "", "shared": False} and capsys.readouterr().err == ""
