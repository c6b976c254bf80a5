import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genpercept_bundle.models.architectures import write_random_checkpoint

REPO = Path(__file__).resolve().parents[1]
COMFYUI = os.environ.get("GENPERCEPT_COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("GENPERCEPT_COMFYUI_PYTHON", sys.executable)


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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def comfyui_server(tmp_path_factory):
    """A real ComfyUI server on 127.0.0.1 with this repository as a node pack and a tiny Marigold model, for the
    end-to-end tests; skipped unless GENPERCEPT_COMFYUI_DIR names a ComfyUI checkout (GENPERCEPT_COMFYUI_PYTHON: a
    Python with its requirements)."""
    if not COMFYUI:
        pytest.skip("set GENPERCEPT_COMFYUI_DIR to a ComfyUI checkout to run")
    base = tmp_path_factory.mktemp("comfyui")
    for folder in ("custom_nodes", "input", "output", "user"):
        (base / folder).mkdir()
    (base / "custom_nodes" / "genpercept-bundle").symlink_to(REPO)
    shutil.copy(REPO / "examples" / "photo.jpg", base / "input" / "genpercept_example.jpg")
    from genpercept_bundle.models.architectures import write_random_pipeline

    # a Marigold depth model in its released layout (tiny, random), for the workflow of another family
    write_random_pipeline(base / "models" / "genpercept" / "marigold-depth-v1-1", "marigold", "depth")
    config = base / "extra_model_paths.yaml"
    config.write_text(f"genpercept_e2e:\n  base_path: {base}\n  custom_nodes: custom_nodes/\n"
                      "  genpercept: models/genpercept/\n")
    port = free_port()
    log = open(base / "server.log", "w")
    process = subprocess.Popen(
        [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--input-directory", str(base / "input"), "--output-directory", str(base / "output"),
         "--user-directory", str(base / "user"), "--extra-model-paths-config", str(config)],
        cwd=COMFYUI, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/system_stats", timeout=30)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"ComfyUI exited: {(base / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("ComfyUI did not start within 120 s")
        yield url, base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
