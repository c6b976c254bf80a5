import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genpercept_bundle.models.architectures import write_random_checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Random-init depth/normal/matte models in the released genpercept-models layout."""
    return write_random_checkpoint(tmp_path_factory.mktemp("models") / "genpercept-models", seed=0)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model):
    from genpercept_bundle import GenPerceptPredictor

    return GenPerceptPredictor.from_pretrained(tiny_model, tasks=["depth", "normal", "matte"], device="cpu")


@pytest.fixture
def photo(tmp_path) -> Path:
    """A 45x61 RGB photo-like image (odd sizes on purpose: no padding anywhere)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:45, 0:61]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1) + rng.integers(0, 20, (45, 61, 3))
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


def write_tiny_text_encoder(folder: Path, hidden_size=32, seed=0) -> Path:
    """A random CLIP text encoder + tokenizer in the SD2 folder layout (text_encoder/, tokenizer/)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokenizer_dir = folder / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a": 3, "a</w>": 4}
    (tokenizer_dir / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(vocab_file=str(tokenizer_dir / "vocab.json"), merges_file=str(tokenizer_dir / "merges.txt"),
                  pad_token="!", model_max_length=77).save_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=5, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            bos_token_id=0, eos_token_id=1, pad_token_id=2)
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")
    return folder
