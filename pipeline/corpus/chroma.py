"""Reaching chromadb: a local PersistentClient or a Chroma server, within time limits, failing in one Chinese line.

`connect` opens the client: a PersistentClient under `<home>/index`, or an HttpClient when a Chroma URL is set
(POXI_CHROMA_URL, --chroma-url; `chroma_url` checks and normalises it). Every chromadb call runs under `guard`,
which turns its failures into one Chinese line: StoreError (exit 4) for a server that cannot be reached or
answers an error, DeadlineExceeded (exit 5) for one that stops answering (each HTTP request has CHROMA_TIMEOUT,
chromadb's own client has none), BrokenIndex for a local `chroma.sqlite3` that is truncated or that chromadb
cannot read (`sqlite_problem`); store.Store then moves the folder aside and rebuilds it from the corpus.

Left out: collections, sync and keyword data (store.py); authentication to the Chroma server.
"""

import contextlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import DeadlineExceeded, IndexError_, InputError, StoreError

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

CHROMA_TIMEOUT = 30.0  # seconds a Chroma server may stay silent on one request (a frozen server ends here)
CONNECT_TIMEOUT = 5.0  # seconds to reach it at all
OPEN_TIMEOUT = 120.0  # seconds a process waits while another opens (creates) the same local index


class BrokenIndex(IndexError_):
    """The local chromadb database cannot be read; `Store.sync` rebuilds it from the corpus."""


def sqlite_problem(path: Path, deep: bool = False) -> str | None:
    """Why `path` is not a usable SQLite file (None when it is, or does not exist yet).

    The cheap check reads the header: a file shorter than the page count it declares was truncated.
    `deep` also runs PRAGMA quick_check.
    """
    if not path.exists():
        return None
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(100)
    if size == 0:
        return None  # chromadb initialises an empty file as a new database
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return "不是有效的 SQLite 数据库文件"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    if pages and size < page_size * pages:
        return f"数据库文件被截断（{size} 字节，应有 {page_size * pages} 字节）"
    if deep:
        import sqlite3

        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                rows = db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return f"数据库无法读取（{exc}）"
        if rows != [("ok",)]:
            return f"数据库完整性检查未通过（{rows[0][0]}）"
    return None


def chroma_url(url: str | None) -> str | None:
    """Normalise POXI_CHROMA_URL; None or "" means the local index.

    Example: "http://10.0.0.5" -> "http://10.0.0.5:8000".
    """
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"Chroma 服务地址「{url}」无效：应形如 http://主机:端口，例如 http://10.0.0.5:8000。")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 8000)
    except ValueError:
        raise InputError(f"Chroma 服务地址「{url}」的端口无效。") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def connect(url: str | None, folder: Path):
    """A chromadb client: an HttpClient for the server at `url`, else a PersistentClient under `folder`."""
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError:
        raise IndexError_("缺少 chromadb：请运行 pip install chromadb。") from None
    settings = Settings(anonymized_telemetry=False)
    if url is not None:
        parts = urlsplit(url)
        _heartbeat(url)  # the client's constructor already talks to the server, with no time limit
        try:
            client = chromadb.HttpClient(host=parts.hostname, port=parts.port, ssl=parts.scheme == "https",
                                         settings=settings)
        except Exception as exc:
            raise _unreachable(url) if "imeout" not in type(exc).__name__ else _frozen(url) from None
        _bound_requests(client)
        return client
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    # two processes opening a new index at once both create its tables ("table collections already exists")
    try:
        with FileLock(str(folder.with_name(folder.name + ".open.lock")), timeout=OPEN_TIMEOUT):
            problem = sqlite_problem(folder / "chroma.sqlite3")
            if problem:
                raise _broken(folder, problem)
            with guard(url, folder):
                return chromadb.PersistentClient(path=str(folder), settings=settings)
    except Timeout:
        raise IndexError_(f"本机索引「{folder}」正被另一个进程打开，{OPEN_TIMEOUT:.0f} 秒后仍未完成：请稍后再试。") from None


@contextlib.contextmanager
def guard(url: str | None, folder: Path):
    """Turn chromadb failures into Chinese errors: server unreachable, or a broken local database."""
    try:
        yield
    except (IndexError_, InputError, DeadlineExceeded, KeyboardInterrupt):
        raise
    except Exception as exc:
        if url is not None:
            text = f"{type(exc).__name__} {exc}"
            if "Timeout" in type(exc).__name__ and "Connect" not in type(exc).__name__:
                raise _frozen(url) from None
            if any(word in text for word in ("Connect", "connect", "Timeout", "refused", "Protocol", "Disconnected")):
                raise _unreachable(url) from None
            raise StoreError(f"Chroma 服务「{url}」返回错误：{_one_line(exc)}") from None
        problem = sqlite_problem(folder / "chroma.sqlite3", deep=True)
        if problem is None and type(exc).__name__ == "InternalError" and "database" in str(exc):
            problem = f"chromadb 无法读取（{_one_line(exc)}）"  # e.g. "database disk image is malformed"
        if problem:
            raise _broken(folder, problem) from None
        raise StoreError(f"本机索引「{folder}」读写出错：{_one_line(exc)}") from None


def _heartbeat(url: str) -> None:
    """Reach the server's heartbeat within the time limits, or raise the error that says which failed."""
    import socket
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=CONNECT_TIMEOUT):
            return
    except urllib.error.HTTPError:
        return  # it answered: an older server without this route still serves the client
    except (TimeoutError, socket.timeout):
        raise _frozen(url, CONNECT_TIMEOUT) from None
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(getattr(exc, "reason", None), (TimeoutError, socket.timeout)):
            raise _frozen(url, CONNECT_TIMEOUT) from None
        raise _unreachable(url) from None


def _bound_requests(client) -> None:
    """Give the HTTP client's requests a time limit: chromadb's own has none, so a frozen server hung poxi."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(CHROMA_TIMEOUT, connect=CONNECT_TIMEOUT)


def _unreachable(url: str) -> StoreError:
    return StoreError(f"连不上 Chroma 服务「{url}」：请确认服务已启动（chroma run --host 0.0.0.0 --port 8000 "
                      f"--path <数据文件夹>），或检查 POXI_CHROMA_URL / --chroma-url。")


def _frozen(url: str, seconds: float | None = None) -> DeadlineExceeded:
    seconds = CHROMA_TIMEOUT if seconds is None else seconds
    return DeadlineExceeded(f"Chroma 服务「{url}」在 {seconds:.0f} 秒内没有响应：服务可能卡住了或负载过高。"
                            f"请检查服务器上的 chroma run 进程，必要时重启它。")


def _broken(folder: Path, problem: str) -> BrokenIndex:
    return BrokenIndex(f"本机索引「{folder / 'chroma.sqlite3'}」已损坏：{problem}。"
                       f"请运行 poxi index，按语料重建索引（语料本身不受影响）。")


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
