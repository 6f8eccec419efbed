"""The local workbench: a FastAPI app serving one page to paste a note, run a draft, check, edit and download it.

A run executes `chain.draft` in a background thread; its events go into a per-run buffer that the page
reads with long polling (`/api/runs/{id}/events?after=N`), so a reloaded page replays the buffer and
re-attaches to a run still going. One run at a time: the embedded model uses every core. Past runs are
listed from the run records the chain writes (`<home>/runs/<id>/record.json`).

Left out: logins and TLS (the server binds to loopback unless --allow-remote), persistence of event
buffers across server restarts (a record left "running" by a dead server is shown as interrupted),
and any drafting or checking logic (chain.py, check.py).
"""

import ipaddress
import json
import re
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import replace
from pathlib import Path

from .errors import InputError, PoxiError
from .textio import DOC_SUFFIXES, read_document

STATIC = Path(__file__).resolve().parent / "web_static"
MAX_UPLOAD = 2 * 1024 * 1024  # a situation note is a few KB
MAX_NOTE_CHARS = 20_000
RUN_ID = re.compile(r"^[\w.-]{1,80}$")
WAIT_MAX = 25.0  # seconds one long poll may hold
KEEP_LIVE = 5  # finished runs whose event buffers stay in memory


class Busy(InputError):
    """Another run is still going (HTTP 409)."""


class NotFound(InputError):
    """No such run (HTTP 404)."""


class Run:
    """One drafting run in this server process: its event buffer, status, cancel flag and result."""

    def __init__(self, run_id: str, note: str, model: str):
        self.id, self.note, self.model = run_id, note, model
        self.events: list[dict] = []
        self.status = "running"
        self.result: dict | None = None
        self.cancel = threading.Event()
        self.cond = threading.Condition()
        self.started = time.time()

    def push(self, event: dict) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def finish(self, status: str) -> None:
        with self.cond:
            self.status = status
            self.events.append({"type": "finished", "status": status})
            self.cond.notify_all()

    def events_after(self, after: int, wait: float) -> list[dict]:
        with self.cond:
            if len(self.events) <= after and self.status == "running" and wait > 0:
                self.cond.wait_for(lambda: len(self.events) > after or self.status != "running", timeout=wait)
            return self.events[after:]

    def sections(self) -> list[str]:
        done = {e["index"]: e["text"] for e in self.events if e.get("type") == "section_done"}
        return [done[i] for i in sorted(done)]


class Runs:
    """Starts runs in threads and answers for live ones and recorded ones."""

    def __init__(self, config, chat_factory=None, draft_fn=None):
        self.config, self.chat_factory, self.draft_fn = config, chat_factory, draft_fn
        self.live: dict[str, Run] = {}
        self.lock = threading.Lock()

    def start(self, note: str, config) -> Run:
        with self.lock:
            busy = [r for r in self.live.values() if r.status == "running"]
            if busy:
                raise Busy(f"已有一个起草任务在运行（{busy[0].id}），请等它完成或先取消。")
            for old in [r.id for r in self.live.values() if r.status != "running"][:-KEEP_LIVE]:
                del self.live[old]  # its record stays on disk; only the event buffer goes
            run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
            run = Run(run_id, note, config.model or ("内置本地模型" if not config.base_url else config.base_url))
            self.live[run_id] = run
        threading.Thread(target=self._work, args=(run, config), name=f"poxi-run-{run_id}", daemon=True).start()
        return run

    def _work(self, run: Run, config) -> None:
        chat = None
        try:
            draft = self.draft_fn
            if draft is None:
                from .chain import draft
            chat = self.chat_factory(config) if self.chat_factory else None
            result = draft(run.note, config, chat=chat, on_event=run.push, cancel=run.cancel, run_id=run.id)
            run.result = {"text": result.text, "sections": result.sections, "check": result.check,
                          "passed": result.passed, "stats": result.stats}
            status = "cancelled" if run.cancel.is_set() else "done"
        except PoxiError as exc:
            status = "cancelled" if run.cancel.is_set() else "failed"
            self._error(run, str(exc))
        except Exception as exc:  # a bug must end the run visibly, not kill the server
            traceback.print_exc(file=sys.stderr)
            status = "cancelled" if run.cancel.is_set() else "failed"
            self._error(run, f"起草时出现内部错误（{type(exc).__name__}：{exc}）。请把终端里的报错信息反馈给维护者。")
        finally:
            if chat is not None and hasattr(chat, "close"):
                chat.close()
        run.finish(status)

    @staticmethod
    def _error(run: Run, message: str) -> None:
        last = run.events[-1] if run.events else {}
        if not (last.get("type") == "error" and last.get("message") == message):
            run.push({"type": "error", "message": message})

    def record(self, run_id: str) -> dict | None:
        path = self.config.runs_dir / run_id / "record.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def detail(self, run_id: str) -> dict:
        if not RUN_ID.match(run_id):
            raise InputError("运行编号不合法。")
        run, record = self.live.get(run_id), self.record(run_id) or {}
        if run is None and not record:
            raise NotFound(f"找不到运行记录「{run_id}」。")
        out = {"id": run_id, "note": record.get("note", ""), "model": record.get("model"), "text": record.get("text") or "",
               "check": record.get("check"), "status": record.get("status", "unknown"), "live": run is not None}
        if run is not None:
            out.update(note=run.note, status=run.status, events=len(run.events))
            if run.result:
                out.update(text=run.result["text"], check=run.result["check"])
            elif not out["text"]:
                out["text"] = "\n\n".join(run.sections())
        elif out["status"] == "running":
            out["status"] = "interrupted"  # written by a server that is gone
        return out

    def history(self, limit: int = 50) -> list[dict]:
        rows = {}
        paths = sorted(self.config.runs_dir.glob("*/record.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in paths[:limit]:
            record = self.record(path.parent.name) or {}
            status = record.get("status", "unknown")
            if status == "running" and path.parent.name not in self.live:
                status = "interrupted"
            check = record.get("check") or {}
            rows[path.parent.name] = {"id": path.parent.name, "status": status, "time": path.stat().st_mtime,
                                      "note": str(record.get("note", ""))[:60], "passed": check.get("passed")}
        for run in self.live.values():  # a run may not have written its record yet
            row = rows.setdefault(run.id, {"id": run.id, "note": run.note[:60], "passed": None, "time": run.started})
            row["status"] = run.status
        return sorted(rows.values(), key=lambda r: r["time"], reverse=True)


def run_config(config, body: dict):
    """The Config for one run: the embedded model, or the endpoint the page names."""
    if body.get("backend", "embedded") == "embedded":
        return replace(config, base_url=None, model=None)
    url = str(body.get("base_url") or "").strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise InputError("接口地址应以 http:// 或 https:// 开头，例如 http://127.0.0.1:8080/v1。")
    return replace(config, base_url=url, model=(body.get("model") or "").strip() or None,
                   api_key=(body.get("api_key") or "").strip() or config.api_key)


def clean_note(text: str) -> str:
    text = (text or "").replace("\r\n", "\n").strip()
    if not text:
        raise InputError("情况说明是空的：请粘贴或上传单位情况说明。")
    if len(text) > MAX_NOTE_CHARS:
        raise InputError(f"情况说明太长（{len(text)} 字，上限 {MAX_NOTE_CHARS} 字）：请只保留与本次剖析相关的部分。")
    return text


def read_upload(name: str, data: bytes) -> str:
    """Text of an uploaded note; InputError for a wrong type, a huge file, binary data or a broken .docx."""
    name = Path(name or "note.txt").name
    suffix = Path(name).suffix.lower()
    if suffix not in DOC_SUFFIXES:
        raise InputError(f"不支持的文件类型「{name}」：请上传 .txt、.md 或 .docx。")
    if len(data) > MAX_UPLOAD:
        raise InputError(f"文件「{name}」太大（超过 {MAX_UPLOAD // 1024 // 1024} MB）。情况说明一般只有几千字，请检查是否选错了文件。")
    with tempfile.TemporaryDirectory(prefix="poxi-upload-") as tmp:
        path = Path(tmp) / f"note{suffix}"
        path.write_bytes(data)
        try:
            text = read_document(path, max_bytes=MAX_UPLOAD)
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), name)) from None
    return clean_note(text)


def create_app(config, *, chat_factory=None, draft_fn=None):
    """The FastAPI app. `chat_factory(config) -> ChatModel` and `draft_fn` replace the real ones in tests."""
    from fastapi import Body, FastAPI, File, Form, Request, UploadFile
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    runs = Runs(config, chat_factory, draft_fn)
    app = FastAPI(title="poxi 工作台", docs_url=None, redoc_url=None)
    app.state.runs = runs
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def _limit_upload(request: Request, call_next):
        size = request.headers.get("content-length", "0")
        if request.url.path == "/api/note" and size.isdigit() and int(size) > MAX_UPLOAD + 65536:
            message = f"文件太大（超过 {MAX_UPLOAD // 1024 // 1024} MB）。情况说明一般只有几千字，请检查是否选错了文件。"
            return JSONResponse({"detail": message}, status_code=413)
        return await call_next(request)

    @app.exception_handler(PoxiError)
    async def _poxi_error(request: Request, exc: PoxiError):
        code = 409 if isinstance(exc, Busy) else 404 if isinstance(exc, NotFound) else 400
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        traceback.print_exception(exc, file=sys.stderr)
        return JSONResponse({"detail": f"服务器内部错误（{type(exc).__name__}）。请重试，或把终端里的报错反馈给维护者。"}, status_code=500)

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/settings")
    def settings():
        from .export import font_note

        if not hasattr(app.state, "font_note"):
            app.state.font_note = font_note()  # fc-list once per server
        return {"base_url": config.base_url, "model": config.model, "has_key": bool(config.api_key),
                "corpus": str(config.corpus), "font_note": app.state.font_note}

    @app.post("/api/note")
    async def upload_note(file: UploadFile = File(...)):
        data = await file.read(MAX_UPLOAD + 1)
        return {"name": file.filename, "text": read_upload(file.filename, data)}

    @app.post("/api/runs")
    def start_run(body: dict = Body(...)):
        run = runs.start(clean_note(body.get("note")), run_config(config, body))
        return {"id": run.id, "status": run.status}

    @app.get("/api/runs")
    def list_runs():
        return {"runs": runs.history()}

    @app.get("/api/runs/{run_id}")
    def run_detail(run_id: str):
        return runs.detail(run_id)

    @app.get("/api/runs/{run_id}/events")
    def run_events(run_id: str, after: int = 0, wait: float = 0.0):
        run = runs.live.get(run_id)
        if run is None:
            detail = runs.detail(run_id)  # a recorded run: nothing to follow
            return {"events": [], "next": 0, "status": detail["status"]}
        events = run.events_after(max(after, 0), min(max(wait, 0.0), WAIT_MAX))
        return {"events": events, "next": max(after, 0) + len(events), "status": run.status}

    @app.post("/api/runs/{run_id}/cancel")
    def cancel_run(run_id: str):
        run = runs.live.get(run_id)
        if run is None:
            raise NotFound(f"没有正在运行的「{run_id}」。")
        run.cancel.set()
        run.push({"type": "step", "step": "cancel", "message": "正在取消：已完成的部分会保留。"})
        return {"id": run_id, "status": run.status}

    @app.post("/api/check")
    def check(body: dict = Body(...)):
        from .check import check_text

        text = str(body.get("text") or "")
        if not text.strip():
            raise InputError("没有可检查的内容：草稿是空的。")
        note = str(body.get("note") or "").strip() or None
        return check_text(text, corpus_dir=config.corpus, note_text=note).to_dict()

    @app.post("/api/export")
    def export(text: str = Form(""), fmt: str = Form("docx"), title: str = Form("")):
        from urllib.parse import quote

        from .export import write_docx

        if not text.strip():
            raise InputError("没有可下载的内容：草稿是空的。")
        name = "原因剖析初稿-" + time.strftime("%Y%m%d")
        if fmt == "md":
            data, kind, name = text.encode("utf-8"), "text/markdown; charset=utf-8", name + ".md"
        elif fmt == "docx":
            with tempfile.TemporaryDirectory(prefix="poxi-export-") as tmp:
                data = write_docx(text, Path(tmp) / "draft.docx", title=title.strip() or None).read_bytes()
            kind, name = "application/vnd.openxmlformats-officedocument.wordprocessingml.document", name + ".docx"
        else:
            raise InputError("下载格式只能是 docx 或 md。")
        disposition = f"attachment; filename=\"poxi-draft{Path(name).suffix}\"; filename*=UTF-8''{quote(name)}"
        return Response(data, media_type=kind, headers={"Content-Disposition": disposition})

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config, *, host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False) -> int:
    """Run the workbench until Ctrl+C. Refuses a non-loopback host unless allow_remote."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(f"拒绝在「{host}」上提供服务：工作台没有登录保护，只应在本机（127.0.0.1）使用。确需让其他电脑访问，请加 --allow-remote。")
    try:
        import uvicorn
    except ImportError:
        raise InputError("工作台需要 fastapi 和 uvicorn：请运行 pip install 'poxi[web]'。") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(f"无法在 {host}:{port} 上启动：{exc.strerror or exc}。端口可能已被占用，请用 --port 换一个。") from None
    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    print(f"工作台已启动：http://{shown}:{port}/  （按 Ctrl+C 退出）", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
