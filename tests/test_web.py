"""Workbench API through FastAPI's TestClient, with a fake draft function that follows chain.draft's contract."""

import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from docx import Document
from fastapi.testclient import TestClient

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.web import create_app, is_loopback, serve

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
        self.calls.append({"note": note, "base_url": config.base_url, "model": config.model, "chat": chat})
        record = config.runs_dir / run_id / "record.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        write = lambda **kw: record.write_text(json.dumps({"note": note, "model": "fake", **kw}, ensure_ascii=False), encoding="utf-8")
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
        from pipeline.check import check_text

        check = check_text(text, corpus_dir=config.corpus).to_dict()
        status = "cancelled" if cancel.is_set() else "done"
        write(status=status, text=text, check=check)
        on_event({"type": "done"})
        return Result(text, [{"text": t} for t in done], check, check["passed"], record)


@pytest.fixture
def fake():
    return FakeDraft()


@pytest.fixture
def client(fake):
    app = create_app(load_config(), chat_factory=lambda config: "chat-for-" + str(config.base_url), draft_fn=fake)
    with TestClient(app) as client:
        yield client
    fake.gate.set()


def wait_finished(client, run_id, timeout=10.0):
    after, events, deadline = 0, [], time.time() + timeout
    while time.time() < deadline:
        body = client.get(f"/api/runs/{run_id}/events", params={"after": after, "wait": 2}).json()
        events += body["events"]
        after = body["next"]
        if body["status"] != "running" and not body["events"]:
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
    assert fake.calls[0]["base_url"] is None and fake.calls[0]["chat"] == "chat-for-None"  # embedded by default
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
    bad = client.post("/api/runs", json={**body, "base_url": "ftp://x"})
    assert bad.status_code == 400 and "http://" in bad.json()["detail"]


def test_one_run_at_a_time_and_cancel_keeps_finished_sections(client, fake):
    run_id = client.post("/api/runs", json={"note": NOTE}).json()["id"]
    busy = client.post("/api/runs", json={"note": NOTE})
    assert busy.status_code == 409 and "已有一个起草任务在运行" in busy.json()["detail"]
    deadline = time.time() + 5
    while "section_done" not in [e["type"] for e in client.get(f"/api/runs/{run_id}/events").json()["events"]]:
        assert time.time() < deadline
        time.sleep(0.02)
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 200
    fake.gate.set()
    events = wait_finished(client, run_id)
    assert events[-1] == {"type": "finished", "status": "cancelled"}
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "cancelled" and detail["text"] == SECTIONS[0][1]


def test_failing_draft_ends_the_run_with_a_message(fake):
    def broken(note, config, **kw):
        raise RuntimeError("boom")

    with TestClient(create_app(load_config(), draft_fn=broken)) as client:
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
        path.write_text(json.dumps({"note": NOTE, "status": status, "text": "正文"}), encoding="utf-8")
    (config.runs_dir / "broken").mkdir()
    (config.runs_dir / "broken" / "record.json").write_text("{not json", encoding="utf-8")
    statuses = {r["id"]: r["status"] for r in client.get("/api/runs").json()["runs"]}
    assert statuses["20240101-000000-aaaaaa"] == "interrupted" and statuses["20240101-000001-bbbbbb"] == "done"
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
    from pipeline.web import KEEP_LIVE

    fake.gate.set()
    runs = client.app.state.runs
    ids = []
    for _ in range(KEEP_LIVE + 2):
        ids.append(client.post("/api/runs", json={"note": NOTE}).json()["id"])
        wait_finished(client, ids[-1])
    assert len(runs.live) <= KEEP_LIVE + 1 and ids[-1] in runs.live and ids[0] not in runs.live
    assert client.get(f"/api/runs/{ids[0]}").json()["status"] == "done"  # still there, from its record
