"""The store under a failing Chroma server, issue 26: a real `chroma run` on loopback killed before and
during a search (exit 4) or frozen with SIGSTOP (exit 5); the search deadline over the whole search."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from pipeline.cli import main


@pytest.mark.parametrize("when", ["before dense", "before mmr"])
def test_chroma_dying_mid_search_is_one_line_and_exit_4(own_chroma, when):
    """F: a server killed during `poxi search` gave httpx.ConnectError from retrieve._mmr, outside the guard."""
    from pipeline.errors import StoreError
    from pipeline.corpus.retrieve import Retriever
    from fakes import HashEmbedder

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
    from fakes import HashEmbedder

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
