"""Who may use the workbench: the Host and Origin checks, the access token, the writer's name, body limits.

Every request must name this server in its Host header: an IP literal, `localhost`, or a name given with
`--server-name` (plus this machine's own names under --allow-remote). A page on another site that rebinds
its DNS name to 127.0.0.1 therefore gets 421, whatever it sends. A request that carries an Origin must come
from the page's own origin (403 otherwise), so no other site can drive the API from a visitor's browser.
With an access token (always under --allow-remote) every /api route but /api/login needs it: as the
HttpOnly cookie the page gets from /api/login, or as an `X-Poxi-Token` or `Authorization: Bearer` header.

Left out: accounts and passwords (the writer's name sorts runs, it does not authenticate), TLS (put a
reverse proxy in front), rate limiting, CORS (the API has no cross-origin users).
"""

import hmac
import ipaddress
import json
import os
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.errors import InputError
from pipeline.textio import write_json

TOKEN_FILE = "web-token"
TOKEN_MIN = 12
WRITER_MAX = 40
TOKEN_HEADER = "x-poxi-token"
WRITER_HEADER = "x-poxi-writer"  # the writer's name, percent-encoded UTF-8 (headers are latin-1)


def host_name(value: str) -> str:
    """The name part of a Host header or netloc, lower case. Example: '[::1]:8765' -> '::1'."""
    value = (value or "").strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def host_port(value: str) -> int | None:
    """The port of a Host header, None when it names none. Example: 'vm:8765' -> 8765, '[::1]' -> None."""
    value = (value or "").strip()
    tail = value.rsplit("]", 1)[-1] if value.startswith("[") else (value if value.count(":") == 1 else "")
    digits = tail.rpartition(":")[2] if ":" in tail else ""
    return int(digits) if digits.isdigit() else None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Guard:
    """The checks every request passes before the app sees it. `names`: host names this server answers to."""

    def __init__(self, names=(), token: str | None = None, cookie: str = "poxi_token"):
        self.names = {host_name(n) for n in names if n} | {"localhost"}
        self.token, self.cookie = token, cookie

    def host_ok(self, host: str) -> bool:
        """IP literals need no DNS, so they cannot be rebound; any other name must be one we were given."""
        name = host_name(host)
        return bool(name) and (name in self.names or is_ip(name))

    def origin_ok(self, origin: str | None, host: str) -> bool:
        """No Origin (curl, same-origin GET) is fine; otherwise it must be this page's own origin: the Host's
        name and port. A server name may differ in scheme (TLS ends at a proxy) but never in port: a page on
        another port of the same host is another origin, and SameSite cookies do not separate ports."""
        if origin is None:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null": a sandboxed frame, a file:// page
        if parts.netloc.lower() == host.strip().lower():
            return True
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        if host_name(parts.netloc) not in self.names - {"localhost"}:
            return False
        expected = host_port(host)
        if expected is None:  # a Host without a port came through a proxy on the scheme's default port
            return port in (80, 443)
        return port == expected

    def token_ok(self, headers, cookies: dict) -> bool:
        if not self.token:
            return True
        given = headers.get(TOKEN_HEADER) or ""
        auth = headers.get("authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        given = given or cookies.get(self.cookie) or ""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8"))

    def refuse(self, path: str, headers, cookies: dict) -> tuple[int, str] | None:
        """(status, Chinese message) when the request must be refused, else None."""
        host = headers.get("host") or ""
        if not self.host_ok(host):
            return 421, (f"拒绝访问：请求的主机名「{host_name(host) or '（空）'}」不是本工作台的地址。"
                         "请用启动时显示的网址打开；需要用其他名字访问时，启动时加 --server-name 该名字。")
        if not self.origin_ok(headers.get("origin"), host):
            return 403, "拒绝访问：请求来自其他网页。请直接在工作台页面里操作。"
        if path.startswith("/api/") and path != "/api/login" and not self.token_ok(headers, cookies):
            return 401, "需要访问令牌：请用管理员给出的完整网址（含 #token=…）打开工作台，或在页面上方输入令牌。"
        return None


def token_path(home: Path) -> Path:
    return Path(home) / TOKEN_FILE


def load_token(home: Path, given: str | None = None) -> tuple[str, bool]:
    """The access token and whether it was just made: `given` (saved for later starts), the saved one, or a new one."""
    path = token_path(home)
    if given is not None:
        given = given.strip()
        if len(given) < TOKEN_MIN or not re.fullmatch(r"[\x21-\x7e]+", given):
            raise InputError(f"访问令牌至少 {TOKEN_MIN} 个字符，只能用英文字母、数字和符号（不含空格）。")
        _write_private(path, given)
        return given, False
    try:
        saved = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        saved = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"无法读取访问令牌文件「{path}」：{exc}。可删除它，或用 --token 重新设置。") from None
    if saved:
        return saved, False
    token = secrets.token_urlsafe(24)
    _write_private(path, token)
    return token, True


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)  # an older file may have been created wider


def writer_name(raw: str | None) -> str:
    """The writer's name from its header: percent-decoded, trimmed; InputError when unusable."""
    try:
        name = " ".join(unquote(raw or "", errors="strict").split())
    except UnicodeDecodeError:
        raise InputError("名字的编码不对：请在页面上重新填写。") from None
    if len(name) > WRITER_MAX:
        raise InputError(f"名字太长（{len(name)} 字，上限 {WRITER_MAX} 字）。")
    if any(ord(c) < 32 or c in "/\\" for c in name):
        raise InputError("名字里不能有斜杠或控制字符。")
    return name


def read_owner(folder: Path) -> dict:
    """{"writer", "shared"} kept beside a run's record; a run without one belongs to the nameless writer."""
    path = Path(folder) / "web.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("writer", ""), str) and isinstance(data.get("shared", False), bool):
            return {"writer": data.get("writer") or "", "shared": data.get("shared", False)}
    except FileNotFoundError:
        return {"writer": "", "shared": False}
    except (OSError, ValueError):
        pass
    # damaged: said in the server's log by name; the run is nobody's (not shown to a named writer) until fixed
    print(f"提示：运行归属文件「{path}」已损坏，这条记录暂不归任何人。可删除该文件（记录归无名用户）或改正其内容。", file=sys.stderr)
    return {"writer": "", "shared": False}


def write_owner(folder: Path, writer: str, shared: bool) -> None:
    write_json(Path(folder) / "web.json", {"writer": writer, "shared": shared})
