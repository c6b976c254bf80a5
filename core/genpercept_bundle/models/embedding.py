"""The empty-text embedding the GenPercept UNet is conditioned on.

v2 checkpoints use the unpadded prompt "" -> [BOS, EOS] -> [1,2,D]; v1
checkpoints the max-length padded form [1,77,D]. CLIP's text encoder is
causal, so the first two rows of the padded embedding *are* the unpadded one:
either form can be derived from the official ``GenPercept_v1/empty_text_embed.npy``.

Sources, in order: our cache next to the model (or in the user cache when the
model folder is read-only), the model's own ``text_encoder/`` + ``tokenizer/``,
a text encoder folder the user names, an ``empty_text_embed.npy`` file.
"""

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..atomic_files import atomic_path
from ..errors import GenPerceptError
from .folders import EMBEDDING_CACHE_NAME as CACHE_NAME

# GenPercept's own file, at a fixed commit of its repository, checked by its sha256 (a branch could change).
OFFICIAL_COMMIT = "7cff083bee566e88f0c82259eb7c62c94dd1dca1"
OFFICIAL_NPY_URL = (f"https://raw.githubusercontent.com/aim-uofa/GenPercept/{OFFICIAL_COMMIT}/"
                    "GenPercept_v1/empty_text_embed.npy")
OFFICIAL_NPY_SHA256 = "677e5e752b1d428a2e5f6f87a62c3a6c726343d264351dc1c433763ddc9b7182"


def _user_cache_file(model_dir: Path) -> Path:
    key = hashlib.sha256(str(Path(model_dir).resolve()).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "genpercept_bundle" / "embeddings" / f"{key}.safetensors"


def cache_files(model_dir: Path) -> list[Path]:
    return [Path(model_dir) / CACHE_NAME, _user_cache_file(model_dir)]


def save_embedding_cache(model_dir: Path, embeddings: dict[str, torch.Tensor]) -> Path:
    """Store {"v2": [1,2,D], "v1": [1,77,D]} next to the model, or in the user cache if read-only."""
    tensors = {kind: value.detach().float().contiguous().cpu() for kind, value in embeddings.items()}
    for target in cache_files(model_dir):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            os.close(handle)
            save_file(tensors, temp)
            os.replace(temp, target)
            return target
        except OSError:
            continue
    raise GenPerceptError(f"cannot write the embedding cache next to {model_dir} nor in the user cache")


def load_cached_embeddings(model_dir: Path) -> dict[str, torch.Tensor]:
    for file in cache_files(model_dir):
        if file.is_file():
            try:
                return load_file(file)
            except Exception as exc:
                raise GenPerceptError(f"{file} is corrupt ({exc}); delete it and run `genpercept embedding` again") from exc
    return {}


def embeddings_from_text_encoder(folder: Path) -> dict[str, torch.Tensor]:
    """Encode "" with an SD2-family CLIP text encoder: ``folder`` holds text_encoder/ and tokenizer/."""
    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder.parent / "tokenizer").is_dir():
        folder = folder.parent  # the user named the text_encoder/ folder itself
    if not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
        raise GenPerceptError(f"{folder} has no text_encoder/ and tokenizer/ folders (as in an SD2 or Marigold repo)")
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as exc:
        raise GenPerceptError("computing the embedding needs transformers: pip install 'genpercept-bundle[text-encoder]'") from exc
    if not any((folder / "text_encoder").glob("*.safetensors")):
        raise GenPerceptError(f"{folder / 'text_encoder'} has no .safetensors weights (pickle weights are never loaded)")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", use_safetensors=True).eval()
    with torch.inference_mode():
        unpadded = tokenizer("", padding="do_not_pad", return_tensors="pt").input_ids  # [1,2]
        length = min(tokenizer.model_max_length, encoder.config.max_position_embeddings)  # 77 for SD2
        padded = tokenizer("", padding="max_length", max_length=length,
                           truncation=True, return_tensors="pt").input_ids  # [1,77]
        return {"v2": encoder(unpadded)[0].float(), "v1": encoder(padded)[0].float()}


def embeddings_from_npy(file: Path) -> dict[str, torch.Tensor]:
    """Read a [77,D] padded embedding (e.g. GenPercept_v1/empty_text_embed.npy); never unpickles."""
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GenPerceptError(f"{file} is not a plain .npy array ({exc})") from exc
    array = array.reshape(-1, array.shape[-1]) if array.ndim >= 2 else None
    if array is None or array.shape[0] != 77:
        raise GenPerceptError(f"{file} should hold the padded empty-text embedding of shape [77, D]")
    padded = torch.from_numpy(array.astype(np.float32))[None]  # [1,77,D]
    return {"v1": padded, "v2": padded[:, :2].clone()}


def download_official_npy(destination: Path) -> Path:
    """Fetch GenPercept's own empty_text_embed.npy from its GitHub repository (not redistributed by us)."""
    import urllib.request

    destination = Path(destination)
    try:
        with urllib.request.urlopen(OFFICIAL_NPY_URL, timeout=30) as response:
            payload = response.read()
    except OSError as exc:
        raise GenPerceptError(
            f"could not download {OFFICIAL_NPY_URL} ({exc}); download it on a machine that is online and pass it "
            "with `genpercept embedding MODEL --npy FILE`"
        ) from exc
    if hashlib.sha256(payload).hexdigest() != OFFICIAL_NPY_SHA256:
        raise GenPerceptError(f"the file downloaded from {OFFICIAL_NPY_URL} is not GenPercept's (sha256 mismatch); "
                              "nothing was written: check your network or proxy, or pass a copy with --npy FILE")
    with atomic_path(destination) as temp:
        temp.write_bytes(payload)
    return destination


def resolve_embedding(model_dir: Path, kind: str, dim: int, text_encoder=None) -> tuple[torch.Tensor, str]:
    """The [1,N,D] embedding of ``kind`` ('v1' or 'v2') for a model, computing and caching it if needed.

    Returns the tensor and a short description of where it came from.
    """
    model_dir = Path(model_dir)
    cached = load_cached_embeddings(model_dir)
    if kind in cached:
        embedding, origin = cached[kind], "cache"
    else:
        encoder_dir = text_encoder or (model_dir if (model_dir / "text_encoder").is_dir() else None)
        if encoder_dir is None:
            raise GenPerceptError(
                f"no empty-text embedding for {model_dir}: run `genpercept embedding {model_dir} --from-github` "
                "(downloads GenPercept's empty_text_embed.npy), or `--text-encoder DIR` with any SD2-family "
                "text_encoder/ + tokenizer/ (e.g. prs-eth/marigold-depth-v1-1), or `--npy FILE`"
            )
        computed = embeddings_from_text_encoder(encoder_dir)
        save_embedding_cache(model_dir, computed)
        embedding, origin = computed[kind], f"text encoder {encoder_dir}"
    if embedding.ndim != 3 or embedding.shape[-1] != dim:
        raise GenPerceptError(
            f"the empty-text embedding for {model_dir} has shape {list(embedding.shape)} but the UNet expects "
            f"[1,N,{dim}]; it belongs to another model: delete {CACHE_NAME} and run `genpercept embedding` again"
        )
    return embedding, origin
