"""The real SD2.1-size architecture, random weights in the released layout, through the public API."""

import numpy as np
import pytest

from genpercept_bundle import GenPerceptPredictor
from genpercept_bundle.models.architectures import write_random_checkpoint


@pytest.fixture(scope="module")
def sd21_model(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("sd21") / "genpercept-depth", tasks=["depth"],
                                   architecture="sd21")


def test_full_size_unet_loads_and_predicts(sd21_model):
    weights = sd21_model / "unet_depth_v2" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size > 3.4e9  # fp32, like the 3.46 GB release files
    predictor = GenPerceptPredictor.from_pretrained(sd21_model, tasks=["depth"], device="cpu")
    unet = predictor.load_task("depth").unet
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(865.9e6, rel=1e-3)
    assert unet.config.upcast_attention and unet.config.use_linear_projection
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    prediction = predictor.predict(rgb, "depth", processing_res=64)
    assert prediction.raw.shape == (1, 50, 70)
    assert np.isfinite(prediction.raw).all() and 0 <= prediction.raw.min() and prediction.raw.max() <= 1
    assert prediction.provenance["embedding"].startswith("v2 [1, 2, 1024]")
