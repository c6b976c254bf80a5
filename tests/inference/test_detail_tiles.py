"""High-resolution detail: tiles aligned to the global pass and blended without seams."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from genpercept_bundle import GenPerceptPredictor, load_image
from genpercept_bundle.errors import GenPerceptError
from genpercept_bundle.inference.detail_tiles import (check_detail, merge_tiles, predict_with_detail, seam_ratio,
                                                      tile_grid)
from genpercept_bundle.inference.predictor import as_rgb_batch

EXAMPLE = Path(__file__).parents[2] / "examples" / "photo.jpg"
HEIGHT, WIDTH = 300, 400


def smooth_scene():
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH] / np.array([HEIGHT, WIDTH])[:, None, None]
    depth = (0.2 + 0.5 * x + 0.2 * np.sin(6 * y)).astype(np.float32)
    normals = np.stack([np.sin(3 * x) * 0.5, np.cos(4 * y) * 0.3, np.ones_like(x)], -1)
    return depth, (normals / np.linalg.norm(normals, axis=-1, keepdims=True)).astype(np.float32)


def turn_about_y(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)


def test_the_grid_covers_the_photo_with_overlapping_tiles():
    grid = tile_grid(HEIGHT, WIDTH, 3)
    covered = np.zeros((HEIGHT, WIDTH), int)
    for rows, columns in grid:
        covered[rows, columns] += 1
    assert len(grid) == 9 and covered.min() >= 1 and covered.max() == 4  # corners of the overlaps: four tiles
    rows, columns = grid[0]
    assert (rows.stop - rows.start, columns.stop - columns.start) == (120, 160)  # side / (3 - 2 * 0.25)
    assert grid[-1][0].stop == HEIGHT and grid[-1][1].stop == WIDTH


def test_depth_tiles_off_by_their_own_scale_and_shift_merge_back_into_the_global_map():
    depth, _ = smooth_scene()
    rng = np.random.default_rng(0)
    tiles = [(tile, depth[tile] * rng.uniform(0.5, 2) + rng.uniform(-0.3, 0.3)) for tile in tile_grid(HEIGHT, WIDTH, 3)]
    merged = merge_tiles("depth", depth, tiles)
    assert np.abs(merged - depth).max() < 1e-4


def test_normal_tiles_turned_by_their_own_rotation_merge_back_into_the_global_normals():
    _, normals = smooth_scene()
    rng = np.random.default_rng(0)
    tiles = [(tile, (normals[tile] @ turn_about_y(rng.uniform(-0.3, 0.3)).T + 1) / 2)
             for tile in tile_grid(HEIGHT, WIDTH, 3)]
    merged = merge_tiles("normal", (normals + 1) / 2, tiles)
    assert np.abs(merged - (normals + 1) / 2).max() < 1e-4


def test_mattes_are_blended_as_they_are_and_a_flat_depth_tile_keeps_the_global_map():
    depth, _ = smooth_scene()
    grid = tile_grid(HEIGHT, WIDTH, 2)
    mattes = [(tile, np.full(depth[tile].shape, value, np.float32)) for tile, value in zip(grid, (0.2, 0.4, 0.6, 0.8))]
    merged = merge_tiles("matte", np.zeros_like(depth), mattes)
    assert merged[0, 0] == pytest.approx(0.2) and merged[-1, -1] == pytest.approx(0.8)
    assert 0.2 < merged[HEIGHT // 2, WIDTH // 2] < 0.8  # the four meet in the middle, blended
    flat = [(tile, np.full(depth[tile].shape, 0.5, np.float32)) for tile in grid]
    assert np.abs(merge_tiles("depth", depth, flat) - depth).max() < 1e-6


def test_the_seam_figure_sees_a_hard_seam_and_not_a_blended_one():
    depth, _ = smooth_scene()
    grid = tile_grid(HEIGHT, WIDTH, 3)
    mosaic = depth.copy()
    for index, (rows, columns) in enumerate(grid):  # tiles pasted with their own offsets, no alignment, no blending
        mosaic[rows, columns] = depth[rows, columns] + 0.05 * (index % 3)
    assert seam_ratio(mosaic, 3) > 3
    assert seam_ratio(merge_tiles("depth", depth, [(t, depth[t] * 2 + 0.1) for t in grid]), 3) < 1.2


def test_a_factor_whose_tiles_would_be_upscaled_is_refused_with_the_largest_that_fits():
    check_detail(400, 600, 2, 256)
    with pytest.raises(GenPerceptError, match="240x160 tiles, smaller than the processing resolution 256.*detail 2"):
        check_detail(400, 600, 3, 256)
    with pytest.raises(GenPerceptError, match="whole number"):
        check_detail(400, 600, 0, 256)
    check_detail(400, 600, 6, 0)  # native resolution: every tile is seen as it is


@pytest.fixture(scope="module")
def embedded():
    return GenPerceptPredictor.from_pretrained(None, ["depth", "normal", "matte"], device="cpu")


def test_the_embedded_model_with_detail_gives_finer_maps_without_seams(embedded):
    photo = as_rgb_batch(load_image(EXAMPLE))  # 600 x 400: 2 x 2 tiles of 343 x 229 at 256 (depth)
    plain = embedded.predict_tasks(photo, ["depth", "normal", "matte"], processing_res=256)
    detailed = predict_with_detail(embedded, photo, ["depth", "normal", "matte"], 2, processing_res=256)
    for task in ("depth", "normal", "matte"):
        maps = detailed[task].maps
        assert maps.shape == plain[task].maps.shape and np.isfinite(maps).all()
        assert detailed[task].provenance["detail"]["tiles"] == 4
        assert seam_ratio(maps[0], 2) < 1.5, task
    assert np.abs(detailed["normal"].maps).max() <= 1 + 1e-5
    assert 0 <= detailed["depth"].raw.min() and detailed["depth"].raw.max() <= 1
    # finer: more structure at the scale of a few pixels than the global pass, which sees the photo at 256 px
    def fine_structure(maps):
        return np.abs(maps - cv2.GaussianBlur(maps, (0, 0), 4)).mean()
    # (measured: 1.46x with the photographic-stage model, whose whole-photo normals are already finer; 1.5x+ before)
    assert fine_structure(detailed["normal"].maps[0]) > 1.25 * fine_structure(plain["normal"].maps[0])
    # and the same layout: the tiles were aligned to the global pass
    assert np.corrcoef(detailed["depth"].maps[0].ravel(), plain["depth"].maps[0].ravel())[0, 1] > 0.9


def test_the_command_line_detail_option_records_it_and_refuses_a_factor_too_large(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "genpercept_bundle.cli", "predict", str(EXAMPLE), "--task", "depth",
               "--out", str(out), "--no-preview"]
    subprocess.run(command + ["--detail", "2"], check=True, capture_output=True)
    assert json.loads((out / "photo_depth.json").read_text())["detail"]["factor"] == 2
    assert np.asarray(Image.open(out / "photo_depth.png")).shape == (400, 600)
    refused = subprocess.run(command + ["--detail", "4", "--out", str(tmp_path / "refused")], capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "Use detail 2 or less" in refused.stderr
    assert not list((tmp_path / "refused").glob("*_depth*"))
