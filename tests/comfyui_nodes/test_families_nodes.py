"""The ComfyUI nodes' work with models of other families: Marigold ensembles with the uncertainty MASK, a
disparity-only model behind the Depth node, the loader's switches meeting a one-task model."""

import numpy as np
import pytest
import torch

from comfyui_nodes import operations
from comfyui_nodes.models import list_models, load_model
from genpercept_bundle import GenPerceptError
from genpercept_bundle.inference.predictor import SamplingOptions
from genpercept_bundle.map_files import read_map
from genpercept_bundle.models.architectures import write_random_dpt_checkpoint, write_random_pipeline


@pytest.fixture(scope="module")
def marigold(tmp_path_factory):
    return write_random_pipeline(tmp_path_factory.mktemp("comfy") / "marigold-depth-v1-1", "marigold", "depth")


def test_the_loader_takes_the_tasks_a_one_task_model_has(marigold):
    model = load_model(str(marigold), ["depth", "normal", "matte"], "cpu")  # every switch on, as by default
    assert model.tasks == ["depth"]
    with pytest.raises(GenPerceptError, match="has depth, none of the tasks asked for \\(normal\\)"):
        load_model(str(marigold), ["normal"], "cpu")


def test_marigold_ensemble_gives_an_uncertainty_mask_and_files(marigold, tmp_path):
    model = load_model(str(marigold), ["depth"], "cpu")
    images = torch.rand(1, 45, 61, 3, generator=torch.Generator().manual_seed(0))
    maps = operations.predict(model, images, "depth", 64, sampling=SamplingOptions(2, 3, 1))
    mask = maps.uncertainty_mask()
    assert mask.shape == (1, 45, 61) and mask.max() > 0 and mask.min() >= 0
    again = operations.predict(model, images, "depth", 64, sampling=SamplingOptions(2, 3, 1))
    assert torch.equal(maps.values, again.values)  # one seed, one map
    files = operations.save_maps(maps, tmp_path, "maps/shot", "exr").maps
    assert read_map(tmp_path / "maps" / "shot_00000_depth_uncertainty.exr").shape == (45, 61)
    assert files[0].name == "shot_00000_depth.exr"
    plain = operations.predict(model, images, "depth", 64)
    assert plain.uncertainty is None and not plain.uncertainty_mask().any()


def test_the_depth_node_shows_a_disparity_model_near_bright(tmp_path):
    folder = write_random_dpt_checkpoint(tmp_path / "genpercept-disparity-dpt-head")
    model = load_model(str(folder), ["depth", "normal", "matte"], "cpu")
    assert model.tasks == ["disparity"]
    maps = operations.predict(model, torch.rand(1, 64, 64, 3), "depth", 0)
    assert maps.task == "disparity"
    shown = operations.render_depth(maps, "none")[0, ..., 0].numpy()
    np.testing.assert_allclose(shown, maps.values[0].numpy(), atol=1e-6)  # disparity is near = bright already
    inverted = operations.render_depth(maps, "none", invert=True)[0, ..., 0].numpy()
    np.testing.assert_allclose(inverted, 1 - maps.values[0].numpy(), atol=1e-6)


def test_every_family_folder_is_listed(tmp_path, marigold):
    write_random_dpt_checkpoint(tmp_path / "genpercept-disparity-dpt-head")
    write_random_pipeline(tmp_path / "lotus-depth-d-v1-0", "lotus-d", "depth")
    (tmp_path / "not-a-model").mkdir()
    assert list_models([str(tmp_path)])[1:] == ["genpercept-disparity-dpt-head", "lotus-depth-d-v1-0"]
