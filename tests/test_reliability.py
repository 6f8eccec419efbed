"""Issue 12, outside the model layer: output paths checked before drafting, rule files in other encodings,
run ids that stay under runs/, run locks, killed runs, retried calls in the record, broken pipes, argv that
is not UTF-8, UTF-16 without a BOM. Real files and real processes; no model."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from conftest import ROOT
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.console import run_draft
from pipeline.copycheck import DEFAULT_TERMS, load_terms
from pipeline.corpus import DEFAULT_DIMENSIONS, DEFAULT_CORPUS, DimensionTagger, load_corpus
from pipeline.errors import InputError
from pipeline.llm import Completion, OpenAIChat
from pipeline.record import Record, list_runs
from pipeline.structure import DEFAULT_SCHEMA, load_schema
from pipeline.textio import decode_bytes, read_document
from tests.fakes import ScriptedChat
from tests.test_llm import FakeServer, chat_body

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
    import pipeline.chain

    def fake_draft(note, config, **kw):  # the folder disappears while the model writes
        out_dir.rmdir()
        record = Record.create(config.runs_dir, "20240101-000000-abcdef", note=note)
        record.update(status="done", text="（一）正文。")
        return pipeline.chain.DraftResult("（一）正文。", [], {}, True, record.path, {"seconds": 1, "calls": 1,
                                          "prompt_tokens": 1, "completion_tokens": 1}, run_id="20240101-000000-abcdef")

    monkeypatch.setattr(pipeline.chain, "draft", fake_draft)
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

    from pipeline.chain import draft
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
