"""The workbench: a FastAPI app serving one page to paste a note, run a draft, check, edit and download it.

Drafts wait in a queue and run in background threads (runs.py); the page follows a run's events by
long polling (`/api/runs/{id}/events?after=N`), so a reloaded page replays them and re-attaches to a run
still going or waiting. Every request first passes guard.py: Host and Origin must be this server's,
and with an access token (always under --allow-remote) every /api route needs it. A draft on an endpoint
the page typed in never gets the server's own API key: only the configured endpoint does.
Errors answer in Chinese: 400 bad input, 401 no token, 403 foreign origin, 404, 409 queue full,
413 too large, 421 foreign host, 422 malformed request, 500 a bug.

Left out: TLS and accounts (see README 多人使用), any drafting or checking logic (drafting/, checks/).
"""

import ipaddress
import re
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config import redact_url
from pipeline.errors import InputError, PoxiError
from pipeline.textio import DOC_SUFFIXES, read_document
from pipeline.web.guard import WRITER_HEADER, Guard, is_ip, load_token, token_path, writer_name
from pipeline.web.runs import KEEP_LIVE, Busy, NotFound, Runs  # noqa: F401  (KEEP_LIVE re-exported)

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = 2 * 1024 * 1024  # a situation note is a few KB
MAX_BODY = 1024 * 1024  # any other request: a note is 20,000 characters at most, a draft a few thousand
MAX_NOTE_CHARS = 20_000
WAIT_MAX = 25.0  # seconds one long poll may hold
COOKIE_DAYS = 30


class Invalid(InputError):
    """A request of the wrong shape, e.g. a number where text belongs (HTTP 422)."""


class TooLargeError(InputError):
    """A body or file over its limit (HTTP 413)."""


def too_large_message(limit: int) -> str:
    size = f"{limit // 1024 // 1024} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
    return f"内容太大（超过 {size}）。情况说明一般只有几千字，请检查是否选错了文件。"


def text_field(body: dict, name: str) -> str:
    """A text field of a JSON body: "" when absent, Invalid (422) when not text."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"请求格式不对：{name} 应为文字，收到的是{type(value).__name__}。")
    return value


def same_endpoint(a: str | None, b: str | None) -> bool:
    """Whether two base URLs name the same endpoint (scheme, host and port, path without a trailing /)."""
    if not a or not b:
        return False
    pa, pb = urlsplit(a.strip()), urlsplit(b.strip())
    return (pa.scheme.lower(), pa.netloc.lower(), pa.path.rstrip("/")) == (pb.scheme.lower(), pb.netloc.lower(), pb.path.rstrip("/"))


def run_config(config, body: dict):
    """The Config for one run: the embedded model, or an endpoint. The server's API key goes only to the
    endpoint it was configured with; for any other address the page must supply its own key."""
    backend = text_field(body, "backend") or "embedded"
    if backend not in ("embedded", "endpoint"):
        raise Invalid("请求格式不对：backend 只能是 embedded 或 endpoint。")
    if backend == "embedded":
        return replace(config, base_url=None, model=None, api_key=None)
    url = text_field(body, "base_url").strip()
    if config.base_url and url == redact_url(config.base_url):
        url = config.base_url  # the page shows the configured URL with its password blanked
    if not re.match(r"^https?://[^\s/]+", url, re.IGNORECASE):
        raise InputError("接口地址应以 http:// 或 https:// 开头，例如 http://127.0.0.1:8080/v1。")
    key = text_field(body, "api_key").strip() or (config.api_key if same_endpoint(url, config.base_url) else None)
    if not key:
        from pipeline.model.client import needs_key

        if needs_key(url):
            raise InputError("这个接口需要 API key：请在页面上填写你自己的 key。服务器上配置的 key 只用于服务器配置的接口地址。")
    return replace(config, base_url=url, model=text_field(body, "model").strip() or None, api_key=key)


def clean_note(text) -> str:
    if text is not None and not isinstance(text, str):
        raise Invalid(f"请求格式不对：note 应为文字，收到的是{type(text).__name__}。")
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
        raise TooLargeError(f"文件「{name}」太大（超过 {MAX_UPLOAD // 1024 // 1024} MB）。情况说明一般只有几千字，请检查是否选错了文件。")
    with tempfile.TemporaryDirectory(prefix="poxi-upload-") as tmp:
        path = Path(tmp) / f"note{suffix}"
        path.write_bytes(data)
        try:
            text = read_document(path, max_bytes=MAX_UPLOAD)
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), name)) from None
    return clean_note(text)


def create_app(config, *, chat_factory=None, draft_fn=None, token: str | None = None, server_names=(),
               concurrency: int = 4, port: int | None = None):
    """The FastAPI app. `token`: required on every /api route when set; `server_names`: host names besides IP
    literals and localhost that requests may use; `concurrency`: drafts at once on an endpoint (the embedded
    model takes one at a time). `chat_factory(config) -> ChatModel` and `draft_fn` replace the real ones in tests.
    The routes are closures over this app's runs and settings, hence one long function."""
    from contextlib import asynccontextmanager

    from fastapi import Body, FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException
    from starlette.requests import HTTPConnection

    runs = Runs(config, chat_factory, draft_fn, concurrency=concurrency)
    guard = Guard(server_names, token, cookie=f"poxi_token_{port}" if port else "poxi_token")

    @asynccontextmanager
    async def lifespan(app):
        yield
        runs.close()  # stops the embedded model server with the app

    app = FastAPI(title="poxi 工作台", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runs, app.state.guard = runs, guard
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    class TooLarge(HTTPException):
        """Raised from inside the body stream: FastAPI passes HTTPExceptions through its body parsing."""

    class Gate:
        """ASGI middleware: the guard's checks, then the body limit (Content-Length and the bytes actually sent)."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            conn = HTTPConnection(scope)
            refusal = guard.refuse(scope["path"], conn.headers, conn.cookies)
            limit = MAX_UPLOAD + 65536 if scope["path"] == "/api/note" else MAX_BODY
            length = conn.headers.get("content-length", "")
            if refusal is None and length.isdigit() and int(length) > limit:
                refusal = 413, too_large_message(limit)
            if refusal:
                return await JSONResponse({"detail": refusal[1]}, status_code=refusal[0])(scope, receive, send)
            seen = 0

            async def limited():
                nonlocal seen
                message = await receive()
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(413, too_large_message(limit))
                return message

            await self.inner(scope, limited, send)

    app.add_middleware(Gate)

    @app.exception_handler(PoxiError)
    async def _poxi_error(request: Request, exc: PoxiError):
        code = {Busy: 409, NotFound: 404, Invalid: 422, TooLargeError: 413}.get(type(exc), 400)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": http_message(exc.status_code, exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        traceback.print_exception(exc, file=sys.stderr)
        return JSONResponse({"detail": f"服务器内部错误（{type(exc).__name__}）。请重试，或把终端里的报错反馈给维护者。"}, status_code=500)

    def writer(request: Request) -> str:
        name = writer_name(request.headers.get(WRITER_HEADER))
        if guard.token and not name:
            raise InputError("请先在页面右上角填写你的名字：起草记录按名字分开保存。")
        return name

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.post("/api/login")
    def login(body: dict = Body(...)):
        given = text_field(body, "token").strip()
        if not guard.token:
            return {"ok": True, "team": False}
        if not guard.token_ok({"x-poxi-token": given}, {}):
            return JSONResponse({"detail": "访问令牌不对：请向管理员确认。"}, status_code=401)
        response = JSONResponse({"ok": True, "team": True})
        response.set_cookie(guard.cookie, guard.token, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="strict")
        return response

    @app.get("/api/settings")
    def settings():
        from pipeline.export import font_note

        if not hasattr(app.state, "font_note"):
            app.state.font_note = font_note()  # fc-list once per server
        shown = redact_url(config.base_url)  # a password in the URL never leaves the server; run_config maps it back
        return {"base_url": shown, "model": config.model, "has_key": bool(config.api_key),
                "endpoints": [shown] if shown else [], "corpus": str(config.corpus),
                "font_note": app.state.font_note, "team": bool(guard.token), "concurrency": runs.limits}

    @app.post("/api/note")
    async def upload_note(file: UploadFile = File(...)):
        data = await file.read(MAX_UPLOAD + 1)
        return {"name": file.filename, "text": read_upload(file.filename, data)}

    @app.post("/api/runs")
    def start_run(request: Request, body: dict = Body(...)):
        name = writer(request)
        run = runs.start(clean_note(body.get("note")), run_config(config, body), name)
        return {"id": run.id, "status": run.status, "queue": run.queue}

    @app.get("/api/runs")
    def list_runs(request: Request):
        return {"runs": runs.history(writer(request))}

    @app.get("/api/runs/{run_id}")
    def run_detail(run_id: str, request: Request):
        return runs.detail(run_id, writer(request))

    @app.get("/api/runs/{run_id}/events")
    def run_events(run_id: str, request: Request, after: int = 0, wait: float = 0.0):
        name = writer(request)
        run = runs.live_run(run_id, name)
        if run is None:
            detail = runs.detail(run_id, name)  # a recorded run: nothing to follow
            return {"events": [], "next": 0, "status": detail["status"]}
        events = run.events_after(max(after, 0), min(max(wait, 0.0), WAIT_MAX))
        return {"events": events, "next": max(after, 0) + len(events), "status": run.status, "queue": run.queue}

    @app.post("/api/runs/{run_id}/cancel")
    def cancel_run(run_id: str, request: Request):
        run = runs.cancel(run_id, writer(request))
        return {"id": run_id, "status": run.status}

    @app.post("/api/runs/{run_id}/share")
    def share_run(run_id: str, request: Request, body: dict = Body(...)):
        shared = body.get("shared", True)
        if not isinstance(shared, bool):
            raise Invalid("请求格式不对：shared 应为 true 或 false。")
        return runs.share(run_id, writer(request), shared)

    @app.post("/api/check")
    def check(body: dict = Body(...)):
        from pipeline.checks.runner import check_text

        text = text_field(body, "text")
        if not text.strip():
            raise InputError("没有可检查的内容：草稿是空的。")
        note = text_field(body, "note").strip() or None
        return check_text(text, corpus_dir=config.corpus, note_text=note).to_dict()

    @app.post("/api/export")
    def export(text: str = Form(""), fmt: str = Form("docx"), title: str = Form("")):
        from urllib.parse import quote

        from pipeline.export import write_docx

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


FIELDS = {"note": "情况说明", "text": "草稿", "file": "文件", "body": "请求正文", "after": "after", "wait": "wait"}


def validation_message(errors: list[dict]) -> str:
    """FastAPI's validation errors as one Chinese line."""
    parts = []
    for error in errors[:3]:
        loc = [str(x) for x in error.get("loc", ()) if x != "body"]
        where = "、".join(FIELDS.get(x, x) for x in loc) or "请求正文"
        kind = str(error.get("type", ""))
        if kind == "json_invalid":
            parts.append("请求正文不是合法的 JSON")
        elif kind == "missing":
            parts.append(f"缺少{where}")
        elif kind in ("dict_type", "model_attributes_type"):
            parts.append(f"{where}应为 JSON 对象（{{…}}）")
        elif kind.endswith(("_type", "_parsing")):
            parts.append(f"{where}的类型不对")
        else:
            parts.append(f"{where}不合法")
    return "请求格式不对：" + "；".join(parts or ["无法解析"]) + "。"


def http_message(status: int, detail) -> str:
    """Starlette's own HTTP errors (404, 405, multipart limits …) in Chinese; ours pass through."""
    if isinstance(detail, str) and re.search(r"[\u4e00-\u9fff]", detail):
        return detail
    if status == 404:
        return "找不到这个地址。"
    if status == 405:
        return "不支持这种请求方法。"
    if status == 413 or "maximum size" in str(detail) or "Too many" in str(detail):
        return too_large_message(MAX_BODY)
    if status == 400:
        return "无法解析请求内容：请检查上传的文件或表单。"
    return f"请求出错（HTTP {status}）。"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config, *, host: str = "127.0.0.1", port: int = 8765, allow_remote: bool = False, token: str | None = None,
          concurrency: int = 4, server_names=()) -> int:
    """Run the workbench until Ctrl+C. A non-loopback host needs allow_remote, which needs an access token:
    `token`, the one saved in $POXI_HOME, or a new one printed once."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(f"拒绝在「{host}」上提供服务：工作台默认只在本机（127.0.0.1）使用。确需让其他电脑访问，请加 --allow-remote（会启用访问令牌）。")
    if concurrency < 1:
        raise InputError("--concurrency 至少为 1。")
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
    created = False
    if allow_remote or token is not None:
        token, created = load_token(config.home, token)
    names = list(server_names)
    if allow_remote:
        names += [socket.gethostname(), socket.getfqdn()]
        if not is_ip(host) and host not in ("", "0.0.0.0", "::"):
            names.append(host)
    app = create_app(config, token=token, server_names=names, concurrency=concurrency, port=port)
    shown = host if host not in ("0.0.0.0", "::") else (list(server_names) + [socket.gethostname()])[0]
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/"
    print(f"工作台已启动：{url}  （按 Ctrl+C 退出）", flush=True)
    if created:
        print(f"已生成访问令牌（只显示这一次，保存在 {token_path(config.home)}）。请把下面的网址发给同事：", flush=True)
        print(f"  {url}#token={token}", flush=True)
    elif token:
        print(f"需要访问令牌（保存在 {token_path(config.home)}；用 --token 可重新设置）。打开网址时在末尾加 #token=令牌。", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
