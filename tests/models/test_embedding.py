"""The empty-text embedding: computed from a text encoder, derived from the v1 .npy, cached, validated."""

import shutil

import numpy as np
import pytest
import torch

from conftest import write_tiny_text_encoder
from genpercept_bundle import GenPerceptError, GenPerceptPredictor
from genpercept_bundle.models.architectures import write_random_checkpoint
from genpercept_bundle.cli import main
from genpercept_bundle.models.embedding import (CACHE_NAME, embeddings_from_npy, embeddings_from_text_encoder,
                                              load_cached_embeddings)


@pytest.fixture(scope="module")
def text_encoder(tmp_path_factory):
    return write_tiny_text_encoder(tmp_path_factory.mktemp("sd2"))


def test_text_encoder_gives_unpadded_and_padded_forms(text_encoder):
    embeddings = embeddings_from_text_encoder(text_encoder)
    assert list(embeddings["v2"].shape) == [1, 2, 32]
    assert list(embeddings["v1"].shape) == [1, 77, 32]
    # CLIP's text encoder is causal: the padded form starts with the unpadded one
    torch.testing.assert_close(embeddings["v1"][:, :2], embeddings["v2"], atol=1e-5, rtol=0)


def test_v1_npy_gives_the_v2_embedding(tmp_path, text_encoder):
    embeddings = embeddings_from_text_encoder(text_encoder)
    npy = tmp_path / "empty_text_embed.npy"
    np.save(npy, embeddings["v1"][0].numpy().astype(np.float16))  # as GenPercept_v1 ships it: [77,D] fp16
    derived = embeddings_from_npy(npy)
    torch.testing.assert_close(derived["v2"], embeddings["v2"], atol=2e-3, rtol=1e-3)
    assert list(derived["v1"].shape) == [1, 77, 32]


def test_pickled_npy_is_refused(tmp_path):
    npy = tmp_path / "evil.npy"
    np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GenPerceptError, match="not a plain .npy"):
        embeddings_from_npy(npy)


def test_computed_once_from_model_text_encoder_and_cached(tmp_path, text_encoder):
    model = write_random_checkpoint(tmp_path / "model", tasks=["depth"], embedding=False)
    shutil.copytree(text_encoder / "text_encoder", model / "text_encoder")
    shutil.copytree(text_encoder / "tokenizer", model / "tokenizer")
    predictor = GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")
    assert "from text encoder" in predictor.predict(np.zeros((16, 16, 3), np.uint8), "depth", 32).provenance["embedding"]
    assert (model / CACHE_NAME).is_file()
    shutil.rmtree(model / "text_encoder")  # the cache is enough from now on
    again = GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")
    assert again.predict(np.zeros((16, 16, 3), np.uint8), "depth", 32).provenance["embedding"].endswith("from cache")


def test_unwritable_model_folder_caches_in_user_cache(tmp_path, text_encoder, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    model = write_random_checkpoint(tmp_path / "model", tasks=["depth"], embedding=False)
    (model / CACHE_NAME).mkdir()  # the cache file cannot be written there (works even as root)
    GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu", text_encoder=text_encoder)
    assert list((tmp_path / "home" / ".cache" / "genpercept_bundle" / "embeddings").glob("*.safetensors"))
    assert load_cached_embeddings(model)["v2"].shape == (1, 2, 32)


def test_missing_embedding_says_how_to_get_one(tmp_path):
    model = write_random_checkpoint(tmp_path / "model", tasks=["depth"], embedding=False)
    with pytest.raises(GenPerceptError, match="--from-github.*--text-encoder DIR.*--npy FILE"):
        GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")


def test_embedding_of_another_model_is_rejected(tmp_path):
    model = write_random_checkpoint(tmp_path / "model", tasks=["depth"], embedding=False)
    npy = tmp_path / "other.npy"
    np.save(npy, np.zeros((77, 1024), np.float16))  # SD2.1-size embedding for a tiny UNet
    assert main(["embedding", str(model), "--npy", str(npy)]) == 0
    with pytest.raises(GenPerceptError, match=r"shape \[1, 2, 1024\] but the UNet expects \[1,N,32\]"):
        GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")


def test_embedding_command_from_text_encoder(tmp_path, text_encoder, capsys):
    model = write_random_checkpoint(tmp_path / "model", tasks=["depth"], embedding=False)
    assert main(["embedding", str(model), "--text-encoder", str(text_encoder / "text_encoder")]) == 0
    assert "v2 [1, 2, 32]" in capsys.readouterr().out
    GenPerceptPredictor.from_pretrained(model, tasks=["depth"], device="cpu")


def test_v1_unet_uses_padded_embedding(tmp_path):
    model = write_random_checkpoint(tmp_path / "model", tasks=["matte"])
    (model / "unet_matting_v2").rename(model / "unet_matting_v1")
    prediction = GenPerceptPredictor.from_pretrained(model, tasks=["matte"], device="cpu").predict(
        np.zeros((16, 16, 3), np.uint8), "matte", 32)
    assert prediction.provenance["embedding"].startswith("v1 [1, 77, 32]")
