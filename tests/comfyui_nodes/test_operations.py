"""The ComfyUI nodes' work on real tensors in ComfyUI's layouts (IMAGE [B,H,W,C], MASK [B,H,W]), without ComfyUI."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_nodes import operations
from comfyui_nodes.models import EMBEDDED, GenPerceptModel, list_models, load_model, resolve_model
from genpercept_bundle import GenPerceptError
from genpercept_bundle.map_files import read_map

EXAMPLE = Path(__file__).parents[2] / "examples" / "photo.jpg"


@pytest.fixture(scope="module")
def model(tiny_model):
    return load_model(str(tiny_model), ["depth", "normal", "matte"], "cpu")


@pytest.fixture
def images():
    return torch.rand(2, 45, 61, 3, generator=torch.Generator().manual_seed(0))


def test_every_output_has_the_input_size(model, images):
    depth = operations.predict(model, images, "depth", 64)
    assert depth.values.shape == (2, 45, 61)
    assert operations.render_depth(depth).shape == (2, 45, 61, 3)
    normals = operations.predict(model, images, "normal", 64)
    assert normals.values.shape == (2, 45, 61, 3)
    assert operations.render_normals(normals).shape == (2, 45, 61, 3)
    alpha, foreground = operations.render_matte(operations.predict(model, images, "matte", 64), images)
    assert alpha.shape == (2, 45, 61) and foreground.shape == (2, 45, 61, 3)  # MASK + RGB, never RGBA
    assert 0 <= alpha.min() and alpha.max() <= 1
    torch.testing.assert_close(foreground, images * alpha[..., None])


def test_rgba_input_is_handled_as_asked(model, images):
    alpha = torch.zeros(2, 45, 61)
    alpha[:, 10:30, 20:40] = 1.0
    rgba = torch.cat([images, alpha[..., None]], dim=-1)
    rgb_only = operations.predict(model, images, "depth", 64).values
    assert torch.equal(operations.predict(model, rgba, "depth", 64, alpha="ignore").values, rgb_only)
    over_grey = images * alpha[..., None] + 0.5 * (1 - alpha[..., None])
    assert torch.equal(operations.predict(model, rgba, "depth", 64).values,  # the default: composited over grey
                       operations.predict(model, over_grey, "depth", 64).values)
    opaque = torch.cat([images, torch.ones(2, 45, 61, 1)], dim=-1)
    assert torch.equal(operations.predict(model, opaque, "depth", 64).values, rgb_only)
    matte = operations.matte_from_alpha(rgba)
    assert matte.task == "matte" and torch.equal(matte.values, alpha)
    assert operations.matte_from_alpha(images) is None and operations.matte_from_alpha(opaque) is None
    with pytest.raises(GenPerceptError, match="alpha handling must be one of over grey, ignore, as matte"):
        operations.predict(model, rgba, "depth", 64, alpha="keep")


def test_node_input_checks_name_the_fix(images):
    assert operations.check_processing_resolution(-1) is None and operations.check_processing_resolution(0) is None
    assert operations.check_processing_resolution(512) is None
    assert "use 496 or 504" in operations.check_processing_resolution(500)
    assert "use 8 or 16" in operations.check_processing_resolution(3)
    assert "at most 4096" in operations.check_processing_resolution(4104)
    assert operations.size_warning(images) is not None and "61x45" in operations.size_warning(images)
    assert operations.size_warning(torch.zeros(1, 64, 80, 3)) is None


def test_a_colour_depth_preview_keeps_near_warm_for_depth_and_disparity():
    ramp = torch.linspace(0, 1, 16).repeat(1, 4, 1)  # [1,4,16]: left near, right far
    preview = operations.render_depth_preview(operations.Maps("depth", ramp), "turbo")
    assert preview.shape == (1, 4, 16, 3) and preview.dtype == torch.float32
    assert preview[0, 0, 0, 0] > preview[0, 0, 0, 2] and preview[0, 0, -1, 2] > preview[0, 0, -1, 0]  # red near, blue far
    as_disparity = operations.render_depth_preview(operations.Maps("disparity", 1 - ramp), "turbo")
    torch.testing.assert_close(as_disparity, preview)
    grey = operations.render_depth_preview(operations.Maps("depth", ramp), "grey")
    torch.testing.assert_close(grey, operations.render_depth(operations.Maps("depth", ramp)))


def test_default_resolution_is_the_models_and_zero_is_native(model, images):
    maps = operations.predict(model, images[:1], "depth", -1)
    assert maps.provenance["processing_res"] == model.predictor.processing_resolution("depth") == 768
    native = operations.predict(model, images[:1], "depth", 0)
    assert native.provenance["processing_res"] == 0  # the same meaning as the CLI's --processing-res 0
    direct = model.predictor.predict(operations.images_to_rgb8(images[:1]), "depth", processing_res=0)
    np.testing.assert_array_equal(native.values.numpy(), direct.maps)


def test_flip_average_choice_reaches_the_predictor(model, images):
    off = operations.predict(model, images, "normal", 64, flip_average="auto")
    on = operations.predict(model, images, "normal", 64, flip_average="on")
    assert off.provenance["flip_average"] is False and on.provenance["flip_average"] is True
    assert not torch.equal(off.values, on.values)
    with pytest.raises(GenPerceptError, match="flip_average must be one of auto, on, off"):
        operations.predict(model, images, "normal", 64, flip_average="yes")


def depth_maps(values):
    return operations.Maps("depth", torch.tensor(values, dtype=torch.float32))


def test_depth_is_near_bright_unless_inverted():
    maps = depth_maps([[[0.1, 0.5, 0.9]]])  # near, middle, far
    shown = operations.render_depth(maps, "none")[0, 0, :, 0]
    assert shown[0] > shown[1] > shown[2]
    inverted = operations.render_depth(maps, "none", invert=True)[0, 0, :, 0]
    assert inverted[0] < inverted[1] < inverted[2]
    stretched = operations.render_depth(maps, "per_image")[0, 0, :, 0]
    torch.testing.assert_close(stretched, torch.tensor([1.0, 0.5, 0.0]))


def test_sequence_normalisation_removes_frame_to_frame_flicker():
    rng = np.random.default_rng(0)
    scene = rng.random((8, 8)).astype(np.float32)
    frames = np.stack([scene, 0.6 * scene + 0.3, 0.8 * scene + 0.05])  # same scene, each frame its own affine range
    frames[2, 0, 0] = 1.0  # an outlier in one frame: per-image min-max would change the whole frame
    per_image = operations.render_depth(depth_maps(frames), "per_image")
    sequence = operations.render_depth(depth_maps(frames), "sequence")
    auto = operations.render_depth(depth_maps(frames), "auto")
    assert torch.equal(sequence, auto)  # batches default to the sequence mode
    torch.testing.assert_close(sequence[0], sequence[1], atol=1e-5, rtol=0)
    assert (sequence[0] - sequence[2]).abs()[1:, 1:].max() < 0.1
    assert (per_image[0] - per_image[2]).abs()[1:, 1:].max() > 0.1


def test_normal_channels_opengl_vs_directx_on_a_sphere():
    y, x = np.mgrid[-1:1:33j, -1:1:33j]
    z = np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))
    sphere = np.stack([x, -y, z], axis=-1)[None].astype(np.float32)  # image rows go down, +Y up
    maps = operations.Maps("normal", torch.from_numpy(sphere))
    gl, dx = operations.render_normals(maps, "opengl"), operations.render_normals(maps, "directx")
    top, bottom, right, centre = (0, 3, 16), (0, 29, 16), (0, 16, 29), (0, 16, 16)
    assert gl[top][1] > 0.85 and gl[bottom][1] < 0.15 and dx[top][1] < 0.15 and dx[bottom][1] > 0.85
    assert gl[right][0] > 0.85 and dx[right][0] > 0.85 and gl[centre][2] > 0.99
    torch.testing.assert_close(gl[..., [0, 2]], dx[..., [0, 2]])
    torch.testing.assert_close(gl[..., 1], 1 - dx[..., 1])


def test_interrupt_stops_between_chunks(model):
    images = torch.rand(3, 24, 24, 3)
    calls = []

    class Interrupted(Exception):
        pass

    def on_progress(done, total):
        calls.append(done)
        raise Interrupted

    with pytest.raises(Interrupted):
        operations.predict(model, images, "depth", 32, batch_size=1, on_progress=on_progress)
    assert calls == [1]


@pytest.mark.parametrize("images,resolution,message", [
    (torch.zeros(0, 8, 8, 3), 64, "empty"),
    (torch.zeros(1, 8, 8, 1), 64, "needs RGB images, got 1 channel"),
    (torch.zeros(8, 8, 3), 64, r"expected an IMAGE batch \[B,H,W,3\]"),
    (torch.zeros(1, 1, 1, 3), 64, "the image is 1x1 pixels; the model needs at least 8x8"),
    (torch.zeros(1, 1, 1, 3).expand(1, 6000, 6000, 3), 6000, "use a processing resolution of 4096 or less"),
])
def test_bad_inputs_have_clear_errors(model, images, resolution, message):
    with pytest.raises(GenPerceptError, match=message):
        operations.predict(model, images, "depth", resolution)


def test_task_not_loaded_is_explained(tiny_model):
    depth_only = load_model(str(tiny_model), ["depth"], "cpu")
    with pytest.raises(GenPerceptError, match="enable 'matte' on the loader node"):
        operations.predict(depth_only, torch.rand(1, 16, 16, 3), "matte", 32)
    with pytest.raises(GenPerceptError, match="at least one"):
        load_model(str(tiny_model), [], "cpu")


def test_render_nodes_check_the_task(model, images):
    depth = operations.predict(model, images[:1], "depth", 64)
    with pytest.raises(GenPerceptError, match="renders normal maps, got depth"):
        operations.render_normals(depth)


def test_save_maps_writes_float_files(model, images, tmp_path):
    depth = operations.predict(model, images, "depth", 64)
    normals = operations.predict(model, images, "normal", 64)
    saved = [operations.save_maps(depth, tmp_path, "shots/take", "exr"),
             operations.save_maps(normals, tmp_path, "shots/take", "exr")]
    files = saved[0].maps + saved[1].maps
    assert [f.name for f in files] == ["take_00000_depth.exr", "take_00001_depth.exr", "take_00000_normal.exr", "take_00001_normal.exr"]
    shown = operations.output_entries(saved[0].previews + saved[1].previews, tmp_path)
    assert shown[0] == {"filename": "take_00000_depth_preview.png", "subfolder": "shots", "type": "output"}
    assert [entry["filename"] for entry in shown[2:]] == ["take_00000_normal_preview.png", "take_00001_normal_preview.png"]
    assert all((tmp_path / entry["subfolder"] / entry["filename"]).is_file() for entry in shown)
    np.testing.assert_allclose(read_map(files[1]), depth.values[1].numpy(), atol=1e-7)
    np.testing.assert_allclose(read_map(files[3]), normals.values[1].numpy(), atol=1e-7)
    assert (tmp_path / "shots" / "take_00000_depth.json").is_file()
    png = operations.save_maps(depth, tmp_path, "png/take", "png16").maps
    np.testing.assert_allclose(read_map(png[0]), depth.values[0].numpy(), atol=1 / 65535)
    with pytest.raises(GenPerceptError, match="inside the output folder"):
        operations.save_maps(depth, tmp_path, "../escape", "exr")


def test_model_folders_are_listed_and_resolved(tiny_model, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "genpercept-models").symlink_to(tiny_model)
    choices = list_models([str(tmp_path), str(tmp_path / "missing")])
    assert choices == [EMBEDDED, "genpercept-models"]
    assert resolve_model("genpercept-models", [str(tmp_path)]) == str(tmp_path / "genpercept-models")
    assert resolve_model(EMBEDDED, [str(tmp_path)]) is None
    with pytest.raises(GenPerceptError, match="models/genpercept"):
        resolve_model("gone", [str(tmp_path)])


def test_model_payload_outside_comfyui(model):
    assert isinstance(model, GenPerceptModel) and model.patcher is None
    assert model.tasks == ["depth", "matte", "normal"]


@pytest.mark.parametrize("name", ["../outside", "/etc", "a/b", ".."])
def test_a_model_name_cannot_leave_the_models_folder(tmp_path, name):
    with pytest.raises(GenPerceptError, match="must be the name of a folder in models/genpercept"):
        resolve_model(name, [str(tmp_path)])


def test_the_save_prefix_is_checked_without_maps(tmp_path):
    assert operations.output_prefix(tmp_path, "shots/take") == (tmp_path / "shots" / "take").resolve()
    for prefix in ("../escape", "/abs/path", "  "):
        with pytest.raises(GenPerceptError, match="inside the output folder"):
            operations.output_prefix(tmp_path, prefix)


def test_steady_video_follows_a_panning_batch_and_leaves_unrelated_images(model):
    photo = torch.from_numpy(np.asarray(Image.open(EXAMPLE).convert("RGB"))).float() / 255
    clip = torch.stack([photo[:, i * 12:i * 12 + 400] for i in range(4)])  # a camera panning 12 px a frame
    maps = operations.predict(model, clip, "depth", 64)
    steadied = operations.steady(maps, clip)
    assert steadied.provenance["steady_video"] is True and steadied.values.shape == maps.values.shape
    assert torch.equal(steadied.values[0], maps.values[0]) and not torch.equal(steadied.values[1:], maps.values[1:])
    assert operations.steady(maps, clip, "off") is maps
    unrelated = torch.rand(3, 45, 61, 3, generator=torch.Generator().manual_seed(5))
    assert operations.steady(operations.predict(model, unrelated, "depth", 64), unrelated).provenance.get(
        "steady_video") is None
    with pytest.raises(GenPerceptError, match="steady_video must be one of auto, on, off"):
        operations.steady(maps, clip, "always")
