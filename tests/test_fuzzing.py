"""Property-based checks: whatever a photo, a model's settings or its config hold, the answer is a picture, settings,
a model, or a clear GenPerceptError, never another exception."""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genpercept_bundle import GenPerceptError, load_image
from genpercept_bundle.models.architectures import TINY_UNET, write_random_checkpoint
from genpercept_bundle.models.settings import SETTINGS_NAME, ModelSettings
from genpercept_bundle.models.weights import load_model


def image_bytes(width, height, mode):
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="TIFF" if mode == "CMYK" else "PNG")
    return buffer.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda raw, cut, flip: raw[:cut] + bytes([b ^ flip for b in raw[cut:cut + 8]]) + raw[cut + 8:],
              st.builds(image_bytes, st.integers(1, 40), st.integers(1, 40), st.sampled_from(["L", "RGB", "RGBA", "P",
                                                                                            "I;16", "1", "CMYK"])),
              st.integers(0, 200), st.integers(0, 255)),
))
def test_any_bytes_load_as_a_photo_or_fail_clearly(tmp_path, data):
    path = tmp_path / "input.png"
    path.write_bytes(data)
    try:
        rgb = load_image(path)
    except GenPerceptError as error:
        assert str(path) in str(error)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                           | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        "default_processing_resolution": json_values | st.integers(-5, 5000),
        "processing_resolution_by_task": st.dictionaries(st.sampled_from(["depth", "normal", "x"]),
                                                         json_values | st.integers(-5, 5000), max_size=3),
        "timestep": json_values | st.integers(-5, 1200),
        "flip_average_tasks": st.lists(st.sampled_from(["depth", "matte", "seg", "bogus"]), max_size=3) | json_values,
        "recipe": json_values,
    }),
))
def test_any_settings_file_loads_or_fails_clearly(tmp_path, values):
    (tmp_path / SETTINGS_NAME).write_text(json.dumps(values))
    try:
        model_settings = ModelSettings.of_folder(tmp_path)
    except GenPerceptError as error:
        assert SETTINGS_NAME in str(error)
        return
    assert 1 <= model_settings.processing_resolution("depth") <= 2048 and 0 <= model_settings.timestep < 1000


@pytest.fixture(scope="module")
def unet_folder(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("fuzz") / "model", tasks=["depth"]) / "unet_depth_v2"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(TINY_UNET)), value=json_values | st.integers(-3, 10**9))
def test_any_model_config_loads_or_fails_clearly(unet_folder, tmp_path, key, value):
    folder = tmp_path / "unet"
    shutil.copytree(unet_folder, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    try:
        load_model(UNet2DConditionModel, folder, torch.float32, "cpu")
    except GenPerceptError as error:
        assert str(folder) in str(error)


@pytest.mark.parametrize("key, value", [("layers_per_block", 10**9), ("block_out_channels", [32, 10**8])])
def test_a_config_asking_for_billions_of_layers_is_refused_before_building(unet_folder, tmp_path, key, value):
    folder = tmp_path / "unet"
    shutil.copytree(unet_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(GenPerceptError, match=f"asks for {key}"):
        load_model(UNet2DConditionModel, folder, torch.float32, "cpu")
