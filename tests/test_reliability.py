"""Issue 12 and 26 end to end, through `poxi` in-process and `python -m pipeline`: output paths checked before
drafting, rule files in other encodings, argv that is not UTF-8, UTF-16 without a BOM, broken pipes, cancel;
damaged caches and prompt files; exit codes; planted secrets; an eval against a failing endpoint; a draft under a
frozen Chroma. Records: tests/test_record.py; Chroma failures: tests/corpus/test_store_failures.py; endpoint
failures and deadlines: tests/model/test_client_failures.py. Real files and real processes; no model."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, poxi
from fakes import CLI_NOTE as NOTE, ScriptedChat
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.console import run_draft
from pipeline.checks.copycheck import DEFAULT_TERMS, load_terms
from pipeline.corpus.samples import DEFAULT_DIMENSIONS, DEFAULT_CORPUS, DimensionTagger, load_corpus
from pipeline.errors import InputError
from pipeline.model.client import OpenAIChat
from pipeline.record import Record
from pipeline.checks.structure import DEFAULT_SCHEMA, load_schema
from pipeline.textio import decode_bytes, read_document


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
    from fakes import HashEmbedder

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
