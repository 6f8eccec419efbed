"""Workbench runs (pipeline/web/runs.py): events and records, the queue and cancel, drafts at once on a slow
endpoint, runs kept per writer, the shared embedded model server, damaged records."""

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from webfakes import (COPIED, LOCAL, SECTIONS, TOKEN, WEB_NOTE as NOTE, _accepts_cancel, endpoint_body, endpoint_draft,
                      wait_finished)
from pipeline.config import load_config
from pipeline.web.app import create_app

pytestmark = pytest.mark.usefixtures("_no_embedded_model")  # the embedded model is out of reach (conftest)


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
