"""End to end in a real ComfyUI server on 127.0.0.1: the pack loads and the example workflows run.

Set GENPERCEPT_COMFYUI_DIR to a ComfyUI checkout (and GENPERCEPT_COMFYUI_PYTHON to a Python that has
ComfyUI's requirements plus this pack's requirements.txt); skipped otherwise.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genpercept_bundle.map_files import read_map

COMFYUI = os.environ.get("GENPERCEPT_COMFYUI_DIR")
PYTHON = os.environ.get("GENPERCEPT_COMFYUI_PYTHON", sys.executable)
REPO = Path(__file__).resolve().parents[2]
NODE_IDS = {"GenPerceptModelLoader", "GenPerceptDownloadModel", "GenPerceptSampling", "GenPerceptDepth",
            "GenPerceptNormals", "GenPerceptMatte", "GenPerceptSaveMaps"}
NEEDS_NO_EXTERNAL_MODEL = ["genpercept_matte_composite", "genpercept_maps_for_blender", "genpercept_marigold_ensemble"]

PAN_FRAMES, PAN_STEP, PAN_WIDTH = 16, 12, 400


def panning_clip() -> list:
    """16 frames of a camera panning 12 px a frame over the example photo."""
    photo = Image.open(REPO / "examples" / "photo.jpg").convert("RGB")
    return [photo.crop((i * PAN_STEP, 0, i * PAN_STEP + PAN_WIDTH, photo.height)) for i in range(PAN_FRAMES)]


pytestmark = pytest.mark.skipif(not COMFYUI, reason="set GENPERCEPT_COMFYUI_DIR to a ComfyUI checkout to run")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(comfyui_server):
    """The session's ComfyUI (tests/conftest.py) with this module's clip in its input folder."""
    url, base = comfyui_server
    frames = panning_clip()
    frames[0].save(base / "input" / "genpercept_pan.webp", save_all=True, append_images=frames[1:], lossless=True,
                   duration=40)
    return url, base


def _run(url, workflow, timeout=600):
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": workflow}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        prompt_id = json.loads(response.read())["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = _get(f"{url}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.5)
    pytest.fail(f"workflow did not finish in {timeout} s")


def test_pack_loads_with_every_node(server):
    url, base = server
    info = _get(f"{url}/object_info")
    assert NODE_IDS <= set(info)
    for node in NODE_IDS:
        for name, spec in {**info[node]["input"].get("required", {}), **info[node]["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    log = (base / "server.log").read_text().splitlines()
    assert not [line for line in log if "IMPORT FAILED" in line and "genpercept" in line.lower()]
    assert any("genpercept-bundle" in line for line in log if "seconds" in line)  # listed in ComfyUI's import times


@pytest.mark.parametrize("name", NEEDS_NO_EXTERNAL_MODEL)
def test_example_workflow_runs(server, name):
    url, base = server
    workflow = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
    result = _run(url, workflow)
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:2000]
    width, height = Image.open(REPO / "examples" / "photo.jpg").size
    output = base / "output" / "genpercept"
    if name == "genpercept_matte_composite":
        composite = np.asarray(Image.open(next(output.glob("composite_*.png"))))
        alpha = np.asarray(Image.open(next(output.glob("alpha_*.png"))))
        assert composite.shape == (height, width, 3) and alpha.shape[:2] == (height, width)
        assert alpha.max() > alpha.min()  # a real matte, not a constant
    elif name == "genpercept_marigold_ensemble":  # another family: Marigold, an ensemble of 3 with its uncertainty
        depth = read_map(output / "marigold" / "photo_00000_depth.exr")
        uncertainty = read_map(output / "marigold" / "photo_00000_depth_uncertainty.exr")
        assert depth.shape == uncertainty.shape == (height, width) and uncertainty.max() > 0
        meta = json.loads((output / "marigold" / "photo_00000_depth.json").read_text())
        assert meta["family"] == "marigold" and meta["ensemble_size"] == 3
    else:
        # Save Maps answers as ComfyUI's save nodes do: its previews as output images the UI and queue show
        saved = result["outputs"]["5"]
        assert saved["images"] == [{"filename": "photo_00000_depth_preview.png", "subfolder": "genpercept/blender",
                                    "type": "output"}]
        assert saved["genpercept_maps"][0]["filename"] == "photo_00000_depth.exr"
        with urllib.request.urlopen(f"{url}/view?filename=photo_00000_depth_preview.png&subfolder=genpercept/blender"
                                    "&type=output", timeout=30) as response:
            assert response.headers["Content-Type"] == "image/png" and len(response.read()) > 1000
        depth_node = result["outputs"]["3"]["images"][0]  # the Depth node's own colour preview
        assert depth_node["type"] == "temp" and depth_node["filename"].endswith(".png")
        depth = read_map(output / "blender" / "photo_00000_depth.exr")
        normals = read_map(output / "blender" / "photo_00000_normal.exr")
        assert depth.shape == (height, width) and normals.shape == (height, width, 3)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
        assert json.loads((output / "blender" / "photo_00000_depth.json").read_text())["task"] == "depth"


def test_controlnet_workflow_only_lacks_its_external_models(server):
    """Without an SD1.5 checkpoint and a depth ControlNet, only their loaders fail validation; ComfyUI still
    runs the parts that validate (the depth preview)."""
    url, _ = server
    workflow = json.loads((REPO / "workflows" / "api" / "genpercept_depth_controlnet.json").read_text())
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": workflow}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
    failing = {workflow[node]["class_type"] for node in answer.get("node_errors", {})}
    if not failing:
        pytest.skip("the SD1.5 checkpoint and depth ControlNet are installed; nothing to check here")
    assert failing == {"CheckpointLoaderSimple", "ControlNetLoader"}, answer["node_errors"]


def test_nodes_are_found_where_comfyui_users_look(server):
    url, _ = server
    info = _get(f"{url}/object_info")
    assert info["GenPerceptDepth"]["category"] == info["GenPerceptNormals"]["category"] == "image/geometry estimation"
    assert info["GenPerceptMatte"]["category"] == "image/background removal"
    assert info["GenPerceptModelLoader"]["category"] == "model/loaders"
    assert {"depth", "depth estimation", "marigold"} <= set(info["GenPerceptDepth"]["search_aliases"])
    assert {"matting", "background removal"} <= set(info["GenPerceptMatte"]["search_aliases"])
    assert info["GenPerceptDepth"]["input"]["required"]["processing_resolution"][1]["step"] == 8


def test_models_are_listed_and_a_new_one_appears_without_a_restart(server, tiny_model):
    url, base = server
    assert any(name.startswith("marigold-depth-v1-1/") and name.endswith(".safetensors")
               for name in _get(f"{url}/models/genpercept"))
    (base / "models" / "genpercept" / "added-after-start").symlink_to(tiny_model)
    model = _get(f"{url}/object_info/GenPerceptModelLoader")["GenPerceptModelLoader"]["input"]["required"]["model"]
    assert model[0] == "COMBO" and "added-after-start" in model[1]["options"]  # what the frontend's refresh (R) reads


def test_a_resolution_off_the_step_is_refused_before_anything_runs(server):
    url, _ = server
    workflow = json.loads((REPO / "workflows" / "api" / "genpercept_maps_for_blender.json").read_text())
    workflow["3"]["inputs"]["processing_resolution"] = 500
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": workflow}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # the normals branch is still valid and runs
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
    assert set(answer["node_errors"]) == {"3"}
    assert "use 496 or 504" in json.dumps(answer["node_errors"]["3"])


MEMORY_MANAGER_SCRIPT = """
import json, sys
sys.argv = ["main.py", "--cpu"]
sys.path[:0] = [{comfyui!r}, {core!r}, {repo!r}]
import torch
import comfy.options
comfy.options.enable_args_parsing()  # as ComfyUI's main.py does: --cpu above is read
import comfy.model_management as management
from comfyui_nodes import operations
from comfyui_nodes.models import load_model

device = management.get_torch_device()
embedded = load_model(None, ["depth"], device)
marigold = load_model({marigold!r}, ["depth"], device)
images = torch.rand(1, 64, 80, 3, generator=torch.Generator().manual_seed(0))
first = [operations.predict(model, images, "depth", 64).values for model in (embedded, marigold)]
managed = [loaded.model for loaded in management.current_loaded_models]
report = {{"both_managed": embedded.patcher in managed and marigold.patcher in managed}}
management.unload_all_models()
report["after_unload"] = sum(loaded.model in (embedded.patcher, marigold.patcher)
                             for loaded in management.current_loaded_models)
again = [operations.predict(model, images, "depth", 64).values for model in (embedded, marigold)]
report["same_maps_after_reload"] = all(torch.equal(a, b) for a, b in zip(first, again))
print(json.dumps(report))
"""


def test_two_models_in_one_process_are_managed_and_offloaded_by_comfyui(server, tmp_path):
    """ComfyUI's memory manager holds both models' patchers, unloads them on request (what it does under memory
    pressure or on /free), and they predict the same maps when loaded again: on a GPU-less run."""
    _, base = server
    script = MEMORY_MANAGER_SCRIPT.format(comfyui=COMFYUI, core=str(REPO / "core"), repo=str(REPO),
                                          marigold=str(base / "models" / "genpercept" / "marigold-depth-v1-1"))
    result = subprocess.run([PYTHON, "-c", script], cwd=COMFYUI, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"both_managed": True, "after_unload": 0, "same_maps_after_reload": True}


def test_a_16_frame_clip_is_steady_in_the_depth_node(server):
    """The same clip through the Depth node with steady_video off and on: consecutive frames' maps, shifted by the
    pan, disagree less when steadied (the scene is the same; only the per-frame perceiver flickers)."""
    url, base = server
    depth_inputs = {"model": ["2", 0], "image": ["1", 0], "processing_resolution": -1, "batch_size": 4,
                    "normalization": "sequence", "invert": False}
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "genpercept_pan.webp"}},
        "2": {"class_type": "GenPerceptModelLoader", "inputs": {"model": "embedded small model (offline default)",
              "depth": True, "normal": False, "matte": False, "device": "auto", "dtype": "auto"}},
        "3": {"class_type": "GenPerceptDepth", "inputs": {**depth_inputs, "steady_video": "off"}},
        "4": {"class_type": "GenPerceptDepth", "inputs": {**depth_inputs, "steady_video": "auto"}},
        "5": {"class_type": "GenPerceptSaveMaps", "inputs": {"maps": ["3", 1], "filename_prefix": "pan/off",
                                                             "format": "npy"}},
        "6": {"class_type": "GenPerceptSaveMaps", "inputs": {"maps": ["4", 1], "filename_prefix": "pan/steady",
                                                             "format": "npy"}},
    }
    result = _run(url, workflow)
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[:2000]

    def disagreement(prefix):
        maps = np.stack([np.load(base / "output" / "pan" / f"{prefix}_{i:05d}_depth.npy") for i in range(PAN_FRAMES)])
        assert maps.shape[0] == PAN_FRAMES
        maps = (maps - maps.min()) / (maps.max() - maps.min())
        return float(np.mean([np.abs(maps[i][:, :-PAN_STEP] - maps[i - 1][:, PAN_STEP:]).mean()
                              for i in range(1, PAN_FRAMES)]))
    before, after = disagreement("off"), disagreement("steady")
    print(f"16-frame pan, consecutive-frame disagreement: steady_video off {before:.4f}, auto {after:.4f}")
    assert json.loads((base / "output" / "pan" / "steady_00001_depth.json").read_text())["steady_video"] is True
    assert after < 0.7 * before


def test_the_bridge_predicts_on_the_server_and_brings_the_maps_back(server, tmp_path):
    """What the Blender add-on does for users whose models live in ComfyUI: upload, queue, wait, download."""
    from genpercept_bundle.comfyui_bridge import ComfyUIBridge
    from genpercept_bundle.errors import GenPerceptError
    from genpercept_bundle.map_files import find_maps

    url, _ = server
    bridge = ComfyUIBridge(url)
    assert "marigold-depth-v1-1" in bridge.check()
    photo = tmp_path / "shot.png"  # lossless: ComfyUI and this process decode the same pixels (JPEG decoders differ)
    Image.open(REPO / "examples" / "photo.jpg").save(photo)
    written = bridge.predict_maps(photo, tmp_path / "maps", ["depth", "normal", "matte"])
    width, height = Image.open(photo).size
    assert set(find_maps(tmp_path / "maps" / "shot.png")) == {"depth", "normal", "matte"}
    assert read_map(written["depth"]).shape == (height, width)
    normals = read_map(written["normal"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    meta = json.loads((tmp_path / "maps" / "shot_depth.json").read_text())
    assert meta["predicted_by"] == f"ComfyUI at {url}" and meta["family"] == "genpercept"
    # the same maps as predicting here with the same model and settings
    from genpercept_bundle import GenPerceptPredictor, load_image

    local = GenPerceptPredictor.from_pretrained(None, ["depth"], device="cpu").predict(load_image(photo), "depth")
    np.testing.assert_allclose(read_map(written["depth"]), local.maps[0], atol=1e-5)
    with pytest.raises(GenPerceptError, match="has no GenPercept model 'missing'"):
        bridge.predict_maps(photo, tmp_path / "none", ["depth"], model="missing")
    with pytest.raises(GenPerceptError, match="cannot reach ComfyUI"):
        ComfyUIBridge(f"http://127.0.0.1:{_free_port()}").check()
