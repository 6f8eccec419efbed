"""Endpoint failures, issue 26: a scripted endpoint on loopback that hangs or answers 500, 429, 401 or
garbage ends a draft with one line, the model's exit code and the failed call in the record; call and draft
deadlines; the wait shown in the progress line."""

import re
import time

import pytest

from fakes import CLI_NOTE as NOTE
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.model.client import Completion, OpenAIChat
from pipeline.record import Record, list_runs


def test_a_hung_endpoint_ends_the_draft_after_one_call_limit(tmp_path, endpoint, hashed, monkeypatch, capsys):
    """The 645 s hang: with a hung endpoint the chain waited out the per-call limit (320 s by default) twice. Now
    the call's own limit ends the draft (exit 5), the record is saved, resumable and lists the failed call."""
    endpoint.script = [("sleep", 20)] * 4
    monkeypatch.setenv("POXI_BASE_URL", endpoint.url)
    monkeypatch.setenv("POXI_CALL_DEADLINE", "2")
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["draft", str(note)]) == 5
    err = capsys.readouterr().err
    assert len(endpoint.requests) == 1  # one call limit spent, not two
    assert "2 秒内没有完成" in err and "--resume" in err and "Traceback" not in err
    run_id = re.search(r"--resume (\S+) 续写", err).group(1)
    record = Record.open(load_config().runs_dir, run_id)
    assert record["status"] == "failed" and "没有完成" in record["error"]
    failed = [c for c in record["calls"] if c.get("failed")]
    assert len(failed) == 1 and failed[0]["seconds"] >= 1.9 and "没有完成" in failed[0]["error"]
    assert failed[0]["attempt"] == 1


def test_the_draft_deadline_ends_a_call_in_flight(endpoint):
    """1: the whole draft's limit cuts a call that its own (longer) limit would let run."""
    from pipeline.deadline import Budget, TimedChat
    from pipeline.errors import DeadlineExceeded

    endpoint.script = [("sleep", 20)]
    chat = TimedChat(OpenAIChat(endpoint.url, model="m", deadline=60), Budget(1.0, "本次起草", "POXI_DRAFT_DEADLINE"))
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="总时限 1 秒") as info:
        chat.complete([{"role": "user", "content": "写"}])
    assert info.value.exit_code == 5 and time.monotonic() - start < 3
    with pytest.raises(DeadlineExceeded):  # and every later call at once
        chat.complete([{"role": "user", "content": "写"}])
    assert [f["attempt"] for f in chat.failed] == [1, 2] and len(endpoint.requests) == 1


def test_a_long_wait_is_shown_and_the_deadline_nears_in_the_progress_line():
    """1: the user sees the wait and the time left, not minutes of nothing."""
    import io

    from pipeline.console import Progress
    from pipeline.deadline import Budget, TimedChat

    class Slow:
        name = "slow"

        def complete(self, messages, *, cancel=None, **kwargs):
            time.sleep(0.35)
            return Completion("好", 1, 1, 0.35, "slow")

    out = io.StringIO()
    progress = Progress(stream=False, out=out)
    progress.budget = Budget(100.0, "本次起草", "POXI_DRAFT_DEADLINE")
    TimedChat(Slow(), progress.budget, on_wait=progress.waiting, notice_every=0.1).complete([])
    assert out.getvalue().count("等待模型回复") >= 2 and "最多还等" in out.getvalue()
    progress({"type": "step", "step": "plan", "message": "4 条原因"})
    assert "还有" not in out.getvalue().splitlines()[-1]  # far from the limit: nothing
    progress.budget.started -= 80
    progress({"type": "step", "step": "plan", "message": "4 条原因"})
    assert "距本次起草的总时限还有" in out.getvalue().splitlines()[-1]


@pytest.mark.parametrize("fault, code, words", [
    (("json", 500, {"error": {"message": "boom"}}), 3, "出错（500"),
    (("json", 429, {"error": {"message": "slow down"}}), 3, "限流"),
    (("raw", 200, b"<html>not json</html>"), 3, "无法解析"),
    (("json", 401, {"error": {"message": "bad key"}}), 3, "拒绝了 API 密钥"),
])
def test_endpoint_faults_are_one_line_and_exit_3(tmp_path, endpoint, hashed, monkeypatch, capsys, fault, code, words):
    """6: the scripted-endpoint faults of the probe, through `poxi draft`: one Chinese line, the model's exit code."""
    endpoint.script = [fault] * 12
    monkeypatch.setenv("POXI_BASE_URL", endpoint.url)
    monkeypatch.setattr(OpenAIChat, "_delay", lambda self, exc, attempt: 0.01)
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    start = time.monotonic()
    assert main(["draft", str(note)]) == code
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and time.monotonic() - start < 60
    runs = list_runs(load_config().runs_dir)
    assert runs[0]["status"] == "failed"
    calls = Record.open(load_config().runs_dir, runs[0]["run_id"])["calls"]
    assert any(c.get("failed") for c in calls)  # 5: the failed call is in the record
