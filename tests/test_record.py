"""Run records (pipeline/record.py), issues 12 and 26: run ids that stay under runs/, run locks, killed runs,
retried calls in the record, truncated and malformed records listed as damaged and refused for resume.
Real files and real processes; no model."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, poxi
from fakes import CLI_NOTE as NOTE, chat_body
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import InputError
from pipeline.model.client import Completion, OpenAIChat
from pipeline.record import Record, list_runs


@pytest.mark.parametrize("run_id", ["../../x", "../x", "/tmp/x", "a/b", "..", ".", "x/../../../x"])
def test_resume_stays_inside_the_runs_folder(tmp_path, run_id, capsys):
    config = load_config()
    outside = config.home.parent / "x" / "record.json"
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_text(json.dumps({"run_id": "x", "note": NOTE, "status": "failed", "calls": []}), encoding="utf-8")
    before = outside.read_bytes()
    with pytest.raises(InputError, match="不合法"):
        Record.open(config.runs_dir, run_id)
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["draft", str(note), "--resume", run_id]) == 2
    assert "不合法" in capsys.readouterr().err and outside.read_bytes() == before


def test_a_run_being_resumed_cannot_be_resumed_again(tmp_path):
    config = load_config()
    Record.create(config.runs_dir, "r1", note=NOTE).update(status="failed")
    script = textwrap.dedent(f"""
        import sys, time
        from pipeline.record import Record
        record = Record.open({str(config.runs_dir)!r}, "r1")  # kept: the lock lives as long as the record
        record.update(status="running")
        print("holding", flush=True)
        time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(InputError, match="正在运行"):
            Record.open(config.runs_dir, "r1").update(status="running")
        assert [r["status"] for r in list_runs(config.runs_dir)] == ["running"]
        note = tmp_path / "note.txt"
        note.write_text(NOTE, encoding="utf-8")
        proc = poxi("draft", note, "--resume", "r1")
        assert proc.returncode == 2 and "正在运行" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    record = Record.open(config.runs_dir, "r1")  # the holder was killed: the run is free again
    record.update(status="running")
    record.update(status="done")


def test_a_killed_run_is_not_running_forever(capsys):
    config = load_config()
    script = textwrap.dedent(f"""
        import time
        from pipeline.record import Record
        record = Record.create({str(config.runs_dir)!r}, "20240101-000000-killed", note="x")
        print("created", flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "created"
        assert list_runs(config.runs_dir)[0]["status"] == "running"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert json.loads((config.runs_dir / "20240101-000000-killed" / "record.json").read_text())["status"] == "running"
    assert list_runs(config.runs_dir)[0]["status"] == "interrupted"
    assert main(["runs"]) == 0 and "interrupted" in capsys.readouterr().out


def test_retried_attempts_are_recorded(tmp_path):
    record = Record.create(tmp_path, "r2", note=NOTE)
    completion = Completion("正文", 10, 5, 2.0, "m", "stop")
    completion.attempts = [{"error": "busy", "status": 503, "seconds": 0.5}, {"error": "空回复", "status": None, "seconds": 0.1}]
    record.add_call("section", completion)
    record.add_call("rewrite", Completion("改写", 4, 2, 0.5, "m"))
    calls = json.loads(record.path.read_text(encoding="utf-8"))["calls"]
    assert [(c["step"], c.get("retried", False), c.get("error")) for c in calls] == [
        ("section", True, "busy"), ("section", True, "空回复"), ("section", False, None), ("rewrite", False, None)]
    assert sum(c["completion_tokens"] for c in calls) == 7


def test_record_counts_every_request_the_endpoint_saw(endpoint):
    """Issue 12 saw 8 calls made and 5 recorded: retried requests are recorded too."""
    endpoint.script = [("json", 503, {"error": {"message": "busy"}}), ("json", 200, chat_body("")),
                       ("json", 200, chat_body("好的"))]
    chat = OpenAIChat(endpoint.url, model="m", backoff=0.01, max_retries=3)
    record = Record.create(load_config().runs_dir, "r3", note=NOTE)
    record.add_call("section", chat.complete([{"role": "user", "content": "写"}]))
    assert len(record["calls"]) == len(endpoint.requests) == 3


def _record(runs_dir, run_id: str, **data) -> Path:
    """A run record as the chain leaves one that failed after its plan, with `data` laid over it."""
    plan = [{"dimension": "理论武装/理想信念", "problems": [1]}] * 4
    record = {"run_id": run_id, "status": "failed", "created": time.time(), "calls": [], "note": NOTE, "plan": plan,
              "sections": [None] * 4, **data}
    path = runs_dir / run_id / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_truncated_record_is_listed_as_damaged_not_dropped(capsys):
    """C: `poxi runs` printed 还没有运行记录。 and `runs --json` printed [] for a record cut in half."""
    config = load_config()
    path = _record(config.runs_dir, "20240101-000000-cut")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert "20240101-000000-cut" in out and "damaged" in out and "还没有运行记录" not in err
    assert str(path) in err and "已损坏" in err
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["status"]) for r in listed] == [("20240101-000000-cut", "damaged")]
    assert "JSON" in listed[0]["error"]


@pytest.mark.parametrize("damage", [{"sections": [{"bogus": 1}, None, None, None]}, {"sections": [None]},
                                    {"calls": [{"step": "x"}]}, {"note_struct": {"problems": "x"}}, "{}", "[]"])
def test_a_malformed_record_is_refused_for_resume_with_exit_2(tmp_path, capsys, damage):
    """D: sections of [{"bogus": 1}, null, …] crashed resume with KeyError: 'retrieved' (exit 1, a traceback);
    a record of {} was answered with the message for another note."""
    config = load_config()
    path = _record(config.runs_dir, "r-bad", **(damage if isinstance(damage, dict) else {}))
    if isinstance(damage, str):
        path.write_text(damage, encoding="utf-8")
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["draft", str(note), "--resume", "r-bad"]) == 2
    err = capsys.readouterr().err
    assert "已损坏" in err and str(path) in err and "另一份" not in err and "Traceback" not in err
    assert main(["runs"]) == 0 and "damaged" in capsys.readouterr().out
