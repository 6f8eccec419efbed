"""Issue 12, outside the model layer: output paths checked before drafting, rule files in other encodings,
run ids that stay under runs/, run locks, killed runs, retried calls in the record, broken pipes, argv that
is not UTF-8, UTF-16 without a BOM. Issue 26: damaged records, caches and prompt files; a scripted endpoint
on loopback that hangs or fails; a real `chroma run` on loopback killed or frozen (SIGSTOP) under a search or
a draft; deadlines; exit codes; planted secrets. Real files and real processes; no model."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.console import run_draft
from pipeline.checks.copycheck import DEFAULT_TERMS, load_terms
from pipeline.corpus.samples import DEFAULT_DIMENSIONS, DEFAULT_CORPUS, DimensionTagger, load_corpus
from pipeline.errors import InputError
from pipeline.model.client import Completion, OpenAIChat
from pipeline.record import Record, list_runs
from pipeline.checks.structure import DEFAULT_SCHEMA, load_schema
from pipeline.textio import decode_bytes, read_document
from tests.fakes import ScriptedChat
from tests.fakes import FakeServer, chat_body

NOTE = "临江县农业农村局党组2024年度民主生活会。查摆的问题：1. 理论学习不深入，全年中心组学习9次。2. 联系群众不够。"


def poxi(*argv, env=None, **kw):
    """`python -m pipeline …` as a separate process, with the test's environment."""
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=120, **kw)


@pytest.fixture
def endpoint():
    server = FakeServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


# -- 5: the output path is checked before any model call -------------------------------------------


@pytest.mark.parametrize("target", ["no/such/dir/x.md", "folder", "folder.md"])
def test_bad_output_path_fails_before_any_model_call(tmp_path, endpoint, target):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.md").mkdir()
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    proc = poxi("draft", note, "-o", tmp_path / target, env={"POXI_BASE_URL": endpoint.url})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "错误：" in proc.stderr and ("不存在" in proc.stderr or "文件夹" in proc.stderr)
    assert endpoint.requests == []  # not one model call was spent


def test_unwritable_output_says_where_the_draft_is_kept(tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    import pipeline.drafting.chain

    def fake_draft(note, config, **kw):  # the folder disappears while the model writes
        out_dir.rmdir()
        record = Record.create(config.runs_dir, "20240101-000000-abcdef", note=note)
        record.update(status="done", text="（一）正文。")
        return pipeline.drafting.chain.DraftResult("（一）正文。", [], {}, True, record.path, {"seconds": 1, "calls": 1,
                                          "prompt_tokens": 1, "completion_tokens": 1}, run_id="20240101-000000-abcdef")

    monkeypatch.setattr(pipeline.drafting.chain, "draft", fake_draft)
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    with pytest.raises(InputError, match="初稿已保存在运行记录 .*record.json.*--resume 20240101-000000-abcdef") as info:
        run_draft(load_config(), str(note), output=str(out_dir / "x.md"))
    assert info.value.exit_code == 2


# -- 6: rule files in GBK, a garbage --schema -----------------------------------------------------


def test_gbk_rule_files_in_a_corpus_folder_are_read(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "s.txt").write_bytes((DEFAULT_CORPUS / "seed-2021-dangshi.txt").read_bytes())
    (corpus / "dimensions.yaml").write_bytes(DEFAULT_DIMENSIONS.read_text(encoding="utf-8").encode("gbk"))
    assert len(load_corpus(corpus).items) == 40
    assert DimensionTagger(corpus / "dimensions.yaml").names == DimensionTagger().names
    for source in (DEFAULT_SCHEMA, DEFAULT_SCHEMA.parent / "stock_phrases.yaml"):
        (corpus / source.name).write_bytes(source.read_text(encoding="utf-8").encode("gb18030"))
    assert load_schema(corpus / "schema.yaml")["stock"]["phrases"] == load_schema()["stock"]["phrases"]
    (corpus / "terms.yaml").write_bytes(DEFAULT_TERMS.read_text(encoding="utf-8").encode("gb18030"))
    assert load_terms(corpus / "terms.yaml") == load_terms()


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, "就是一段文字，不是规则".encode("gbk"), b"- a\n- b\n",
                                     b"sections: [\n", b"\xff\xfe\x00garbage"])
def test_garbage_schema_is_exit_2_with_a_message(tmp_path, content):
    schema = tmp_path / "schema.yaml"
    schema.write_bytes(content)
    draft = tmp_path / "draft.txt"
    draft.write_text("（一）理论学习不够深入。正文。", encoding="utf-8")
    proc = poxi("check", draft, "--schema", schema)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "错误：" in proc.stderr and str(schema) in proc.stderr


def test_utf16_without_bom_is_text(tmp_path):
    text = "关于理论学习不深入的原因\n（一）学习 2024 年。\n"
    for encoding in ("utf-16-le", "utf-16-be"):
        path = tmp_path / f"{encoding}.txt"
        path.write_bytes(text.encode(encoding))
        assert read_document(path) == text
    assert decode_bytes("plain words\n".encode("utf-16-le")) == "plain words\n"
    with pytest.raises(InputError, match="不是文本文件"):
        decode_bytes(bytes(range(256)) * 8)  # NULs alone do not make a binary file UTF-16


# -- 8: run ids, run locks, killed runs, retried calls ---------------------------------------------


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


# -- 8: argv that is not UTF-8, a reader that goes away -------------------------------------------


def test_query_that_is_not_utf8_is_exit_2(capsys):
    query = b"\xff\xfe\xb2\xe2".decode("utf-8", "surrogateescape")  # what Python makes of such argv bytes
    assert main(["search", query]) == 2
    assert "UTF-8" in capsys.readouterr().err


def test_query_that_is_not_utf8_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "search", b"\xff\xfe\xb2\xe2"], capture_output=True,
                          cwd=ROOT, env={**os.environ, "LANG": "C.UTF-8"}, timeout=60)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr


def test_closed_stdout_exits_quietly():
    """`poxi runs --json | head -0`: the reader is gone before poxi writes."""
    config = load_config()
    for n in range(200):
        Record.create(config.runs_dir, f"r{n}", note=NOTE).update(status="done")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "runs", "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # like `head` exiting
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_json_into_head_exits_quietly():
    proc = subprocess.run(f"{sys.executable} -m pipeline runs --json | head -c 1", shell=True, capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_cancel_reaches_the_model_call_and_ends_the_run_at_once():
    """The workbench's cancel: the chain hands its event to every call, so a long call ends at once."""
    import threading

    from pipeline.drafting.chain import draft
    from pipeline.errors import Cancelled
    from tests.fakes import HashEmbedder

    class SlowChat:
        name = "slow"
        called = threading.Event()

        def complete(self, messages, *, cancel=None, **kwargs):
            assert cancel is not None, "the chain must pass its cancel event to the model"
            self.called.set()
            cancel.wait(30)  # a model that would take half a minute
            raise Cancelled("已取消：模型调用已中止。")

    cancel, chat = threading.Event(), SlowChat()
    threading.Thread(target=lambda: chat.called.wait(60) and (time.sleep(0.3), cancel.set()), daemon=True).start()
    config = load_config()
    try:
        result = draft(NOTE + "3. 作风不扎实，调研走过场。", config, chat=chat, embedder=HashEmbedder(), cancel=cancel,
                       run_id="cancelled-run")
        assert result.status == "cancelled"
    except Cancelled:
        pass
    assert chat.called.is_set() and cancel.is_set()
    assert Record.open(config.runs_dir, "cancelled-run")["status"] == "cancelled"


# -- issue 26: the seven failures a hostile probe found, and deadlines ---------------------------------------


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


def test_a_gbk_prompt_folder_loads_and_a_broken_one_fails_before_drafting(tmp_path):
    """E: a GB18030 section.yaml in `eval --prompts` was a UnicodeDecodeError traceback, after minutes of drafting."""
    from pipeline.evaluation.models import check_prompts_dir
    from pipeline.prompts import PROMPTS_DIR, load_prompt, prompt_names

    folder = tmp_path / "prompts"
    folder.mkdir()
    for name in prompt_names():
        (folder / f"{name}.yaml").write_bytes((PROMPTS_DIR / f"{name}.yaml").read_text(encoding="utf-8").encode("gb18030"))
    assert check_prompts_dir(folder, PROMPTS_DIR) == folder.resolve()
    for name in prompt_names():
        gbk, utf8 = load_prompt(name, folder), load_prompt(name)
        assert (gbk.system, gbk.user) == (utf8.system, utf8.user)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "section.yaml").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(InputError, match="section.yaml"):
        check_prompts_dir(broken, PROMPTS_DIR)
    (broken / "section.yaml").write_text("version: 1\nsystem: 你好\nuser: '{{ unit '\n", encoding="utf-8")
    with pytest.raises(InputError, match="语法错误"):
        check_prompts_dir(broken, PROMPTS_DIR)


@pytest.fixture
def own_chroma(tmp_path):
    """A Chroma server of this test's own (it gets killed or frozen), indexed with the corpus; yields (proc, config)."""
    from conftest import free_port, start_chroma, stop_chroma
    from pipeline.corpus.store import Store
    from tests.fakes import HashEmbedder

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


@pytest.mark.parametrize("when", ["before dense", "before mmr"])
def test_chroma_dying_mid_search_is_one_line_and_exit_4(own_chroma, when):
    """F: a server killed during `poxi search` gave httpx.ConnectError from retrieve._mmr, outside the guard."""
    from pipeline.errors import StoreError
    from pipeline.corpus.retrieve import Retriever
    from tests.fakes import HashEmbedder

    proc, config = own_chroma
    retriever = Retriever(config, embedder=HashEmbedder())
    if when == "before dense":
        proc.kill()
        proc.wait()
    else:
        dense = retriever.dense

        def dense_then_die(*args, **kwargs):
            found = dense(*args, **kwargs)
            proc.kill()
            proc.wait()
            return found

        retriever.dense = dense_then_die
    with pytest.raises(StoreError, match="连不上 Chroma 服务") as info:
        retriever.search("理论学习不深入", 3)
    assert info.value.exit_code == 4


SEARCH = ("import sys; sys.path.insert(0, 'tests'); import fakes, pipeline.corpus.embed as e; "
          "e.make_embedder = lambda *a, **k: fakes.HashEmbedder(); from pipeline.cli import main; sys.exit(main(sys.argv[1:]))")


def test_a_frozen_chroma_ends_a_search_with_exit_5(own_chroma):
    """G: `kill -STOP` on the server left `poxi search` waiting until it was killed (100 s in the probe)."""
    proc, config = own_chroma
    os.kill(proc.pid, signal.SIGSTOP)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SEARCH, "--home", str(config.home), "--chroma-url", config.chroma_url,
                           "search", "理论学习不深入", "--embedder", "hash-test"], capture_output=True, text=True,
                          cwd=ROOT, timeout=150, env={**os.environ, "POXI_SEARCH_DEADLINE": "60"})
    seconds = time.monotonic() - start
    assert done.returncode == 5, done.stderr[-2000:]
    assert "没有响应" in done.stderr and "Traceback" not in done.stderr and seconds < 60


def test_a_frozen_chroma_mid_search_ends_at_the_request_limit(own_chroma, monkeypatch):
    """G, frozen after the client connected: each request has a limit (chromadb's own client has none)."""
    import pipeline.corpus.chroma
    from pipeline.errors import DeadlineExceeded
    from pipeline.corpus.retrieve import Retriever
    from tests.fakes import HashEmbedder

    proc, config = own_chroma
    monkeypatch.setattr(pipeline.corpus.chroma, "CHROMA_TIMEOUT", 2.0)
    retriever = Retriever(config, embedder=HashEmbedder())
    os.kill(proc.pid, signal.SIGSTOP)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="没有响应") as info:
        retriever.search("理论学习不深入", 3)
    assert info.value.exit_code == 5 and time.monotonic() - start < 10


def test_the_search_deadline_bounds_the_whole_search(monkeypatch):
    """1: however a search stalls, `poxi search` ends by search_deadline with exit 5."""
    import pipeline.corpus.retrieve

    class Stuck:
        def __init__(self, config):
            time.sleep(30)

    monkeypatch.setattr(pipeline.corpus.retrieve, "Retriever", Stuck)
    import pipeline.corpus.store  # an embedder change rebuilds the index first: that is not the search's time

    monkeypatch.setattr(pipeline.corpus.store.Store, "follow_embedder", lambda self, **kw: False, raising=False)
    monkeypatch.setenv("POXI_SEARCH_DEADLINE", "1")
    start = time.monotonic()
    assert main(["search", "理论学习不深入"]) == 5
    assert time.monotonic() - start < 5


@pytest.fixture
def hashed(monkeypatch):
    """Drafts index the corpus with the hash embedder (no model download)."""
    import pipeline.corpus.embed
    from tests.fakes import HashEmbedder

    monkeypatch.setattr(pipeline.corpus.embed, "make_embedder", lambda *a, **k: HashEmbedder())
    monkeypatch.setenv("POXI_EMBEDDER", HashEmbedder.name)


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


def test_a_damaged_response_cache_entry_is_named_and_set_aside(tmp_path, capsys):
    """2: a cache entry cut short was silently a miss; now it is named, moved aside and replaced."""
    from pipeline.cache import CachedChat

    inner = ScriptedChat(["一", "二"])
    cached = CachedChat(inner, tmp_path / "responses")
    cached.complete([{"role": "user", "content": "写"}])
    entry = next((tmp_path / "responses").rglob("*.json"))
    entry.write_text('{"text": "一", "prompt_tok', encoding="utf-8")
    assert cached.complete([{"role": "user", "content": "写"}]).text == "二"
    assert str(entry) in capsys.readouterr().err
    assert entry.with_name(entry.name + ".broken").read_text(encoding="utf-8").startswith('{"text": "一"')
    assert json.loads(entry.read_text(encoding="utf-8"))["text"] == "二"


def test_help_lists_the_exit_codes(capsys):
    """4: the exit codes are in `poxi --help` and in the README, the same."""
    from pipeline.errors import EXIT_CODES

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for code, meaning in EXIT_CODES.items():
        assert f"{code:<4}{meaning}" in out
        assert f"| {code} | {meaning} |" in readme
    assert len(set(EXIT_CODES)) == len(EXIT_CODES) >= 7


def test_eval_never_writes_an_endpoint_password(tmp_path, endpoint, hashed, monkeypatch, capsys):
    """3: the eval JSON, its report and its progress lines name each model's URL with the password blanked."""
    from pipeline.evaluation.cases import load_cases, load_gates
    from pipeline.evaluation.models import parse_compare
    from pipeline.evaluation.runner import run_compare
    from pipeline.evaluation.report import write_report

    secret = "pw-eval-SECRET-77"
    monkeypatch.setattr(OpenAIChat, "_delay", lambda self, exc, attempt: 0.01)
    url = endpoint.url.replace("http://", f"http://urluser:{secret}@")
    endpoint.script = [("json", 500, {"error": {"message": f"no model at urluser:{secret}"}})] * 40
    gates = load_gates(None)
    cases = load_cases(None, only=["bank-branch"], defaults=gates["case"])
    messages = []
    data = run_compare(cases, load_config({"home": tmp_path / "home"}), [parse_compare(f"ep={url}@m")], gates=gates,
                       use_cache=False, out_json=tmp_path / "e.json", progress=messages.append)
    write_report(data, tmp_path / "r.md")
    out, err = capsys.readouterr()
    assert len(endpoint.requests) >= 1
    texts = [json.dumps(data, ensure_ascii=False), (tmp_path / "e.json").read_text(encoding="utf-8"),
             (tmp_path / "r.md").read_text(encoding="utf-8"), "\n".join(messages), out, err]
    assert all(secret not in text for text in texts)
    assert "urluser:***@" in texts[1]


@pytest.mark.parametrize("damage", [b"", b"\x80\x04garbage", "pickled list"])
def test_a_damaged_copy_index_cache_is_named_set_aside_and_rebuilt(tmp_path, capsys, damage):
    """2: the copy check's cache (a pickle) that is cut short or holds something else is reported, not trusted."""
    import pickle

    from pipeline.checks.copycheck import CopyIndex

    first = CopyIndex.load(DEFAULT_CORPUS, tmp_path)
    path = next(tmp_path.glob("copyindex-*.pkl"))
    path.write_bytes(pickle.dumps([1, 2]) if damage == "pickled list" else damage)
    again = CopyIndex.load(DEFAULT_CORPUS, tmp_path)
    assert isinstance(again, CopyIndex) and len(again.__dict__) == len(first.__dict__)
    assert str(path) in capsys.readouterr().err and path.with_name(path.name + ".broken").exists()
    assert isinstance(pickle.loads(path.read_bytes()), CopyIndex)  # rebuilt in its place


def test_draft_output_and_files_never_carry_a_planted_secret(tmp_path, endpoint, hashed, monkeypatch, capfd):
    """3: `poxi draft`, `poxi runs --json` and every file they leave: no API key, no URL password, even when the
    endpoint echoes both back in its errors."""
    key, password = "sk-planted-CLI-SECRET-5e6f7a8b", "pw-planted-CLI-SECRET-3c4d"
    endpoint.script = [("json", 500, {"error": {"message": f"bad key {key} at urluser:{password}"}})] * 40
    monkeypatch.setattr(OpenAIChat, "_delay", lambda self, exc, attempt: 0.01)
    monkeypatch.setenv("POXI_BASE_URL", endpoint.url.replace("http://", f"http://urluser:{password}@"))
    monkeypatch.setenv("POXI_API_KEY", key)
    monkeypatch.setenv("POXI_CACHE", str(tmp_path / "cache"))
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    assert main(["draft", str(note), "--json"]) == 3
    assert main(["runs", "--json"]) == 0
    out, err = capfd.readouterr()
    assert len(endpoint.requests) >= 1 and "urluser:***@" in err
    config = load_config()
    files = [p for folder in (config.home, config.cache) for p in folder.rglob("*")
             if p.is_file() and p.suffix not in (".sqlite3", ".bin", ".pickle", ".pkl")]
    assert any(p.name == "record.json" for p in files)
    for secret in (key, password):
        assert secret not in out and secret not in err
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


def test_a_hung_endpoint_fails_each_eval_case_once_not_the_suite(tmp_path, endpoint, hashed):
    """1: each eval case has its own limit; a hung endpoint fails the case after one call limit (the chain's retry
    is not spent on it) and the suite goes on to the next case."""
    from pipeline.evaluation.cases import load_cases, load_gates
    from pipeline.evaluation.runner import run_eval

    endpoint.script = [("sleep", 20)] * 8
    gates = load_gates(None)
    cases = load_cases(None, only=["bank-branch", "primary-school"], defaults=gates["case"])
    data = run_eval(cases, load_config({"home": tmp_path / "home"}), chat=OpenAIChat(endpoint.url, model="m", deadline=1.5),
                    gates=gates, use_cache=False, out_json=tmp_path / "e.json")
    assert [e["id"] for e in data["entries"]] == ["bank-branch", "primary-school"]
    assert all(not e["passed"] and "没有完成" in e["error"] for e in data["entries"])
    assert len(endpoint.requests) == 2  # one per case


def test_a_frozen_chroma_ends_a_draft_with_the_record_resumable(own_chroma, tmp_path, endpoint, hashed, monkeypatch, capsys):
    """1: a Chroma server that freezes under a draft ends it (exit 5) with the record saved and the way back named
    (a draft with moves: without them it reads no index)."""
    proc, config = own_chroma
    monkeypatch.setenv("POXI_MOVES", "retrieved")
    monkeypatch.setenv("POXI_BASE_URL", endpoint.url)
    monkeypatch.setenv("POXI_CHROMA_URL", config.chroma_url)
    monkeypatch.setenv("POXI_HOME", str(config.home))
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    os.kill(proc.pid, signal.SIGSTOP)
    start = time.monotonic()
    assert main(["draft", str(note)]) == 5
    err = capsys.readouterr().err
    assert "没有响应" in err and "--resume" in err and time.monotonic() - start < 40
    run_id = re.search(r"--resume (\S+) 续写", err).group(1)
    record = Record.open(config.runs_dir, run_id)
    assert record["status"] == "failed" and "Chroma" in record["error"]
