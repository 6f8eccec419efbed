"""Shared fixtures. Accidental network calls fail loudly: keys cleared, base URL on a dead loopback port."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "POXI_API_KEY", "POXI_MODEL", "POXI_CORPUS", "POXI_EMBEDDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("POXI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    monkeypatch.setenv("POXI_HOME", str(tmp_path_factory.mktemp("poxi_home")))
    # the model cache (assembled GGUF, tiktoken files) is shared across tests and runs on purpose
    monkeypatch.setenv("POXI_CACHE", os.environ.get("POXI_TEST_CACHE", str(Path.home() / ".cache" / "poxi")))
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
