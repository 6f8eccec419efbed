"""The embedded model: weight assembly (fast, on small fake parts) and the real llama.cpp server on
loopback (marker `llm`: assembles the 1.1 GB GGUF into the shared cache once, then about a minute)."""

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from pipeline.model import server as local
from pipeline.config import Config
from pipeline.errors import ModelError
from pipeline.model.client import make_chat


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three small parts standing in for the 22 real ones; size and hash constants patched to match."""
    blobs = [os.urandom(3000), os.urandom(5000), b"tail"]
    paths = []
    for i, blob in enumerate(blobs, 1):
        path = tmp_path / "parts" / f"part{i:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(blob)
        paths.append(path)
    whole = b"".join(blobs)
    monkeypatch.setattr(local, "part_paths", lambda: paths)
    monkeypatch.setattr(local, "MODEL_SIZE", len(whole))
    monkeypatch.setattr(local, "MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    return paths, whole


def test_assembles_in_order_and_verifies(tmp_path, fake_parts):
    paths, whole = fake_parts
    seen = []
    dest = local.assemble_model(tmp_path / "cache", progress=lambda done, total: seen.append((done, total)))
    assert dest == tmp_path / "cache" / "models" / local.MODEL_FILE
    assert dest.read_bytes() == whole and seen[-1] == (len(whole), len(whole))
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".assemble-")] == []  # no temp left over


def test_second_call_skips_work_when_marker_present(tmp_path, fake_parts, monkeypatch):
    dest = local.assemble_model(tmp_path)
    monkeypatch.setattr(local, "part_paths", lambda: pytest.fail("reassembled although the file was verified"))
    monkeypatch.setattr(local, "_sha256", lambda p: pytest.fail("rehashed although the marker says verified"))
    assert local.assemble_model(tmp_path) == dest


def test_hash_mismatch_is_an_error_and_leaves_nothing(tmp_path, fake_parts, monkeypatch):
    monkeypatch.setattr(local, "MODEL_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="校验失败.*pip install -e '.\\[local\\]'"):
        local.assemble_model(tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir() if p.suffix != ".lock"] == []


def test_wrong_total_size_is_an_error(tmp_path, fake_parts, monkeypatch):
    monkeypatch.setattr(local, "MODEL_SIZE", 1)
    with pytest.raises(ModelError, match="大小不符"):
        local.assemble_model(tmp_path)


def test_corrupt_existing_file_is_reassembled(tmp_path, fake_parts):
    paths, whole = fake_parts
    dest = tmp_path / "models" / local.MODEL_FILE
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"x" * len(whole))  # right size, wrong bytes, no marker
    assert local.assemble_model(tmp_path).read_bytes() == whole


def test_missing_parts_name_the_install_command(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ModelError, match=r"第 1, 2, .*22 部分.*pip install -e '.\[local\]'"):
        local.part_paths()


def test_free_port_is_bindable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", local.free_port()))


# -- the real model --------------------------------------------------------------------------------

TEST_CACHE = Path(os.environ.get("POXI_TEST_CACHE", str(Path.home() / ".cache" / "poxi")))


@pytest.fixture(scope="module")
def chat():
    config = Config(cache=TEST_CACHE, base_url=None, threads=2, context_window=4096, temperature=0.2, seed=42)
    model = make_chat(config)
    yield model
    server = model.server
    process = server.process
    model.close()
    assert server.process is None and (process is None or process.poll() is not None)


@pytest.mark.llm
def test_real_model_file_is_verified():
    path = local.assemble_model(TEST_CACHE)
    assert path.stat().st_size == 1_117_320_768
    assert path.with_name(path.name + ".sha256").read_text().strip() == local.MODEL_SHA256


@pytest.mark.llm
def test_chinese_chat_streams(chat):
    pieces = []
    result = chat.complete([{"role": "system", "content": "你是一名党务工作者，用简体中文回答，不用 Markdown。"},
                            {"role": "user", "content": "用一句话说明为什么要加强理论学习。"}],
                           on_token=pieces.append, max_tokens=60)
    assert chat.server.process is not None and chat.server.base_url.startswith("http://127.0.0.1:")
    assert result.text == "".join(pieces) and len(re.findall(r"[\u4e00-\u9fff]", result.text)) >= 5
    assert 0 < result.completion_tokens <= 60 and result.prompt_tokens > 10
    assert result.model == local.MODEL_ALIAS


@pytest.mark.llm
def test_json_mode_returns_parseable_json(chat):
    result = chat.complete([{"role": "system", "content": "只输出 JSON 对象。"},
                            {"role": "user", "content": "单位：某县税务局。问题：学习不深入；服务意识不强。"
                             "请输出 JSON：{\"unit\": 单位名, \"problems\": [问题…]}"}], json_mode=True, max_tokens=120)
    data = json.loads(result.text)
    assert isinstance(data, dict) and data, result.text


@pytest.mark.llm
def test_the_embedded_server_as_an_outside_endpoint_is_held_to_the_same_constraints(chat, tmp_path):
    """`poxi serve` runs this same server: used through --base-url, the probe reads llama-cpp-python off
    /v1/models, sees the real grammar hold its two-answer schema, and a section call is sent exactly what the
    embedded model is sent (issue 27: a served model wrote worse drafts without its grammar)."""
    from pipeline.drafting.links import section_schema
    from pipeline.model.client import OpenAIChat

    server = chat.server.start()
    outside = OpenAIChat(server.base_url, probe_cache=tmp_path, timeout=120)
    capability = outside.capability
    assert (capability.kind, capability.grammar, capability.bias, capability.source) == ("llama-cpp-python", True, "words", "probe")
    assert outside.enforces_schema and outside.model == local.MODEL_ALIAS
    schema = section_schema(["理论学习流于形式，根子在于班子"], [["理想信念不够坚定", "宗旨意识树得不牢"]])
    messages = [{"role": "user", "content": "问题1：理论学习流于形式，根子在于班子"}]
    asked = [c._request(messages, 80, True, False, schema=schema, seed=7, temperature=0.0, avoid=["重视"]) for c in (outside, chat)]
    assert asked[0] == asked[1]
    assert OpenAIChat(server.base_url, probe_cache=tmp_path).capability.source == "cache"


@pytest.mark.llm
def test_server_that_cannot_load_reports_its_output(tmp_path):
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file")
    with pytest.raises(ModelError, match="启动失败") as info:
        local.LocalServer(bogus, threads=1, startup_timeout=60).start()
    assert "服务输出末尾" in str(info.value) and len(str(info.value)) > 40


@pytest.mark.llm
def test_server_dies_with_a_killed_parent():
    import signal
    import subprocess
    import sys
    import time

    script = ("import sys, time; from pipeline.model.server import LocalServer, assemble_model; from pathlib import Path\n"
              "s = LocalServer(assemble_model(Path(sys.argv[1])), threads=1, n_ctx=512).start()\n"
              "print(s.process.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(TEST_CACHE)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup in the parent
    parent.wait()
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("llama.cpp server outlived its killed parent")
