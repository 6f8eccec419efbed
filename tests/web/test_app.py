"""The workbench app (pipeline/web/app.py) through FastAPI's TestClient: the page, uploads, checks, exports,
settings, serving, malformed requests in Chinese, and secrets that reach no route or file."""

import io
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from docx import Document
from fastapi.testclient import TestClient

from webfakes import COPIED, LOCAL, TOKEN, WEB_NOTE as NOTE, api_routes, wait_finished
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.web.app import create_app, is_loopback, serve

pytestmark = pytest.mark.usefixtures("_no_embedded_model")  # the embedded model is out of reach (conftest)


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "原因剖析起草工作台" in page.text
    assert "http" not in page.text.replace("http://127.0.0.1:8080/v1", "")  # no CDN or other outside resources
    assert client.get("/static/app.js").status_code == 200


def test_endpoint_model_is_passed_to_the_run(client, fake):
    fake.gate.set()
    body = {"note": NOTE, "backend": "endpoint", "base_url": "http://127.0.0.1:8080/v1", "model": "qwen", "api_key": "k"}
    run_id = client.post("/api/runs", json=body).json()["id"]
    wait_finished(client, run_id)
    assert fake.calls[0]["base_url"] == "http://127.0.0.1:8080/v1" and fake.calls[0]["model"] == "qwen"
    assert fake.calls[0]["api_key"] == "k"  # the page's own key
    bad = client.post("/api/runs", json={**body, "base_url": "ftp://x"})
    assert bad.status_code == 400 and "http://" in bad.json()["detail"]


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


def test_no_route_and_no_file_gives_away_a_planted_secret(monkeypatch, capfd, tmp_path):
    """3: the server's API key and a password in its endpoint URL reach no response, event, record, cache or log
    line, while a real draft runs against an endpoint that echoes both back in its errors."""
    import pipeline.corpus.embed
    from dataclasses import replace

    from fakes import HashEmbedder
    from fakes import FakeServer

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
                response = call(method, path.replace("20240101-000000-aaaaaa", run_id),
                                json={"note": NOTE, "text": "（一）正文。"})
                if (method, path) == ("POST", "/api/runs"):  # a second draft: let it end before files are read
                    seen.append(json.dumps(wait_finished(client, response.json()["id"], timeout=120, headers=writer),
                                           ensure_ascii=False))
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
