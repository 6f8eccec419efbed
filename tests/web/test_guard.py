"""Who may use the workbench (pipeline/web/guard.py): Host and Origin checks against DNS rebinding, which
endpoint gets the server's key, the access token for a team, writer names, damaged owner files."""

import json
import shutil
import socket
import stat
import subprocess
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from webfakes import (KEY, LOCAL, TOKEN, WEB_NOTE as NOTE, api_routes, endpoint_body, endpoint_draft, live_server,
                      wait_finished)
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.web.app import create_app

pytestmark = pytest.mark.usefixtures("_no_embedded_model")  # the embedded model is out of reach (conftest)


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


@pytest.mark.parametrize("name, ok", [("张三", True), ("  王 五 ", True), ("字" * 41, False), ("a/b", False), ("%FF%FE", False)])
def test_writer_names(team, name, ok):
    headers = {"X-Poxi-Token": TOKEN, "X-Poxi-Writer": name if "%" in name else quote(name)}
    assert (team.get("/api/runs", headers=headers).status_code == 200) is ok


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


@pytest.mark.parametrize("content", ["{\"writer\": \"张", "[]", "{\"writer\": 7}"])
def test_a_damaged_owner_file_is_named_in_the_log(tmp_path, capsys, content):
    """2: web.json that is cut short or of the wrong shape was silently read as the nameless writer's."""
    from pipeline.web.guard import read_owner

    (tmp_path / "web.json").write_text(content, encoding="utf-8")
    assert read_owner(tmp_path) == {"writer": "", "shared": False}
    assert str(tmp_path / "web.json") in capsys.readouterr().err
    assert read_owner(tmp_path / "none") == {"writer": "", "shared": False} and capsys.readouterr().err == ""
