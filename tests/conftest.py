"""Shared fixtures. Accidental network calls fail loudly: keys cleared, base URL on a dead loopback port.

`chroma_server` starts a real Chroma server from the venv's chromadb package on a free loopback port, once per
session; `chroma_url` runs a test against both the local PersistentClient (None) and that server (its URL).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "POXI_API_KEY", "POXI_MODEL", "POXI_CORPUS", "POXI_EMBEDDER",
                "POXI_CHROMA_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("POXI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    monkeypatch.setenv("POXI_HOME", str(tmp_path_factory.mktemp("poxi_home")))
    # the model cache (assembled GGUF, tiktoken files) is shared across tests and runs on purpose
    monkeypatch.setenv("POXI_CACHE", os.environ.get("POXI_TEST_CACHE", str(Path.home() / ".cache" / "poxi")))
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_chroma(path: Path, port: int, log: Path, wait: float = 90.0) -> subprocess.Popen:
    """`chroma run --path PATH --port PORT` on 127.0.0.1, returned once its heartbeat answers."""
    chroma = Path(sys.executable).with_name("chroma")
    cmd = [str(chroma)] if chroma.exists() else [sys.executable, "-m", "chromadb.cli.cli"]
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    with log.open("w") as out:
        proc = subprocess.Popen([*cmd, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + wait
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                stop_chroma(proc)
                raise RuntimeError(f"chroma run did not answer in {wait:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)


def stop_chroma(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real local Chroma server for the whole session; yields its URL (http://127.0.0.1:PORT)."""
    folder = tmp_path_factory.mktemp("chroma_server")
    port = free_port()
    proc = start_chroma(folder / "data", port, folder / "server.log")
    yield f"http://127.0.0.1:{port}"
    stop_chroma(proc)


@pytest.fixture(params=["local", "server"])
def chroma_url(request):
    """None: the local PersistentClient under POXI_HOME; else the URL of a real Chroma server (HttpClient)."""
    return request.getfixturevalue("chroma_server") if request.param == "server" else None


# -- the eval suite (tests/evaluation/): each file applies audit_reports_only with pytestmark ------------------

@pytest.fixture
def audit_reports_only(tmp_path, monkeypatch):
    """The shipped gates with the genre audit reporting only: the drafts here are written to test the other
    gates and are not audit-clean. The audit gate itself: test_audit_gate_reports_or_fails and
    test_shipped_audit_gate_is_on_and_zero."""
    import yaml

    from pipeline.evaluation import cases as evalcases

    data = yaml.safe_load(evalcases.DEFAULT_GATES.read_text(encoding="utf-8"))
    data["audit"]["mode"] = "report"
    path = tmp_path / "shipped-gates" / "config.yaml"  # apart: some tests read tmp_path itself as a cases folder
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(evalcases, "DEFAULT_GATES", path)


@pytest.fixture
def cases_dir(tmp_path):
    from evalfakes import NOTE_A, NOTE_B, make_case

    folder = tmp_path / "cases"
    folder.mkdir()
    make_case(folder, "bureau", NOTE_A, ["下基层调研", "审批", "耕地|图斑", "不动产登记"])
    make_case(folder, "school", NOTE_B, ["思政课", "作业", "党员教师", "教辅"])
    return folder


@pytest.fixture
def config(tmp_path):
    from pipeline.config import load_config

    return load_config({"home": str(tmp_path / "home"), "cache": str(tmp_path / "cache")})  # own response cache


@pytest.fixture
def audited(monkeypatch):
    """The check with an audit key, whether or not pipeline/audit.py has landed."""
    from evalfakes import fake_audit
    from pipeline.evaluation import runner as ev

    real = ev.run_check

    def run_check(text, note, config):
        return {**real(text, note, config), "audit": fake_audit(text)}

    monkeypatch.setattr(ev, "run_check", run_check)  # the runner's own binding: _draft_one calls it


@pytest.fixture
def eval_endpoint():
    """The scripted OpenAI-compatible endpoint `two_models` sends remote drafts and verdicts to."""
    from evalfakes import Endpoint, remote_reply

    server = Endpoint(remote_reply)
    yield server
    server.close()


@pytest.fixture
def two_models(monkeypatch, tmp_path, eval_endpoint):
    """`embedded` is a scripted fake chat; anything with a base URL goes to the real client on loopback."""
    import types
    from types import SimpleNamespace

    import pipeline.model.client
    from evalfakes import fake_draft, writer

    real, embedded = pipeline.model.client.make_chat, writer(n=200)
    monkeypatch.setattr(pipeline.model.client, "make_chat", lambda cfg: embedded if cfg.base_url is None else real(cfg))
    monkeypatch.setitem(sys.modules, "pipeline.drafting.chain", types.SimpleNamespace(draft=fake_draft))
    monkeypatch.setenv("POXI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("POXI_API_KEY_REMOTE", "k-remote")
    return SimpleNamespace(embedded=embedded, endpoint=eval_endpoint)


# -- the workbench (tests/web/): each file applies _no_embedded_model with pytestmark ---------------------------

@pytest.fixture
def _no_embedded_model(request, monkeypatch):
    """Outside `llm` tests, reaching the embedded model is a bug in the test: fail instead of loading 1 GB."""
    if request.node.get_closest_marker("llm") is None:
        from pipeline.model.server import LocalServer

        def refuse(self):
            raise AssertionError("a test reached the embedded model")

        monkeypatch.setattr(LocalServer, "start", refuse)


@pytest.fixture
def fake():
    from webfakes import FakeDraft

    return FakeDraft()


@pytest.fixture
def client(fake):
    from fastapi.testclient import TestClient

    from webfakes import LOCAL
    from pipeline.config import load_config
    from pipeline.web.app import create_app

    app = create_app(load_config(), chat_factory=lambda config: "chat-for-" + str(config.base_url), draft_fn=fake)
    with TestClient(app, base_url=LOCAL) as client:
        yield client
    fake.gate.set()


@pytest.fixture
def slow():
    from webfakes import SlowEndpoint

    endpoints = []

    def make(delay=0.2):
        endpoints.append(SlowEndpoint(delay))
        return endpoints[-1]

    yield make
    for endpoint in endpoints:
        endpoint.close()


@pytest.fixture
def team(fake):
    from fastapi.testclient import TestClient

    from webfakes import LOCAL, TOKEN
    from pipeline.config import load_config
    from pipeline.web.app import create_app

    app = create_app(load_config(), draft_fn=fake, token=TOKEN, port=8765)
    with TestClient(app, base_url=LOCAL) as client:
        yield client
    fake.gate.set()


# -- the reliability suite (issue 26): `python -m pipeline`, a scripted endpoint, a Chroma of a test's own ---------

def poxi(*argv, env=None, **kw):
    """`python -m pipeline …` as a separate process, with the test's environment."""
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120, **kw)


@pytest.fixture
def endpoint():
    from fakes import FakeServer

    server = FakeServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def own_chroma(tmp_path):
    """A Chroma server of this test's own (it gets killed or frozen), indexed with the corpus; yields (proc, config)."""
    import signal

    from pipeline.config import load_config
    from pipeline.corpus.store import Store
    from fakes import HashEmbedder

    port = free_port()
    proc = start_chroma(tmp_path / "chroma", port, tmp_path / "chroma.log")
    config = load_config({"chroma_url": f"http://127.0.0.1:{port}", "embedder": HashEmbedder.name,
                          "home": tmp_path / "home"})
    try:
        Store(config).sync(HashEmbedder())
        yield proc, config
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            stop_chroma(proc)


@pytest.fixture
def hashed(monkeypatch):
    """Drafts index the corpus with the hash embedder (no model download)."""
    import pipeline.corpus.embed
    from fakes import HashEmbedder

    monkeypatch.setattr(pipeline.corpus.embed, "make_embedder", lambda *a, **k: HashEmbedder())
    monkeypatch.setenv("POXI_EMBEDDER", HashEmbedder.name)
