"""Cycles renders of the current Blender scene: the photo (linear, denoised) and the exact geometry passes.

Two renders per layer, so that anti-aliasing never blends ground truth:

- ``render_photo``: many samples, Blackman-Harris pixel filter, OpenImageDenoise -> linear RGB(A); with a
  transparent film the alpha is the exact coverage of what the camera sees (hair strands, veils) and the colour is
  premultiplied.
- ``render_geometry``: one sample at each pixel's centre (pixel filter 0.01 px), every material replaced by a plain
  diffuse one (no bump, no transparency), no bounces -> the Z pass (Cycles writes planar depth along the view axis,
  in metres) and the Normal pass (world space), turned into camera space: +X right, +Y up, +Z toward the viewer.
"""

import tempfile
from pathlib import Path

import numpy as np

from .exr_files import read_exr_channels

NOTHING_DEPTH = 1e9  # Cycles' Z where a ray hits nothing (1e10)
FAR_LIMIT = 65.5  # metres: beyond what 16-bit millimetre PNGs hold, depth is stored as 0 (sky = far)
_scratch = tempfile.TemporaryDirectory(prefix="genpercept-cycles-")


def configure_cycles(size, samples: int, threads: int = 0):
    """Cycles on the CPU for ``size`` = (width, height); ``threads`` 0 = all cores."""
    import bpy

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.threads_mode = "FIXED" if threads else "AUTO"
    if threads:
        scene.render.threads = threads
    scene.render.use_persistent_data = True  # the BVH is built once for the photo and the geometry render
    cycles = scene.cycles
    cycles.samples = samples
    cycles.use_adaptive_sampling = True
    cycles.adaptive_threshold = 0.02
    cycles.seed = 0  # same scene -> same pixels; scenes differ by their layout
    cycles.max_bounces, cycles.diffuse_bounces, cycles.glossy_bounces = 6, 3, 3
    cycles.transmission_bounces, cycles.transparent_max_bounces = 6, 16
    cycles.sample_clamp_indirect = 8.0  # no fireflies from small bright paths at low sample counts
    cycles.caustics_reflective = cycles.caustics_refractive = False
    settings = scene.render.image_settings
    settings.media_type = "MULTI_LAYER_IMAGE"
    settings.color_depth = "32"
    settings.exr_codec = "NONE"
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_normal = True


def render_photo(transparent: bool = False, denoise: bool = True) -> np.ndarray:
    """Linear RGBA [H,W,4] float32 of the scene camera (premultiplied by alpha)."""
    import bpy

    scene = bpy.context.scene
    scene.render.film_transparent = transparent
    scene.render.filter_size = 1.5
    scene.cycles.use_denoising = denoise
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    scene.view_layers[0].material_override = None
    channels = _render("photo")
    return np.stack([channels[f"ViewLayer.Combined.{c}"] for c in "RGBA"], axis=-1)


def render_geometry(world_to_camera: np.ndarray, intrinsics: dict) -> tuple[np.ndarray, np.ndarray]:
    """Depth [H,W] (planar, metres; 0 = nothing or beyond FAR_LIMIT) and camera-space unit normals [H,W,3] facing
    the camera (0 where nothing is hit) at the pixel centres."""
    import bpy

    scene = bpy.context.scene
    saved = (scene.cycles.samples, scene.cycles.max_bounces, scene.cycles.use_adaptive_sampling,
             scene.cycles.transparent_max_bounces)
    scene.render.film_transparent = True
    scene.render.filter_size = 0.01
    scene.cycles.use_denoising = False
    scene.cycles.samples, scene.cycles.max_bounces, scene.cycles.use_adaptive_sampling = 1, 0, False
    scene.cycles.transparent_max_bounces = 0
    scene.view_layers[0].material_override = _plain_material()
    try:
        channels = _render("geometry")
    finally:
        (scene.cycles.samples, scene.cycles.max_bounces, scene.cycles.use_adaptive_sampling,
         scene.cycles.transparent_max_bounces) = saved
        scene.view_layers[0].material_override = None
    z = channels["ViewLayer.Depth.Z"]
    hit = z < NOTHING_DEPTH
    world_normals = np.stack([channels[f"ViewLayer.Normal.{c}"] for c in "XYZ"], axis=-1)
    normals = world_normals @ np.asarray(world_to_camera, np.float32).T
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-6)
    rays = pixel_rays(intrinsics, *z.shape)
    facing_away = np.einsum("hwc,hwc->hw", normals, rays) > 0  # back faces (thin sheets, leaves seen from behind)
    normals = np.where(facing_away[..., None], -normals, normals)
    normals = np.where(hit[..., None], normals, 0.0).astype(np.float32)
    depth = np.where(hit & (z <= FAR_LIMIT), z, 0.0).astype(np.float32)
    return depth, normals


def pixel_rays(intrinsics: dict, height: int, width: int) -> np.ndarray:
    """Camera-space directions [H,W,3] through the pixel centres (z = -1: the camera looks down -Z)."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([(u - intrinsics["cx"]) / intrinsics["fx"], -(v - intrinsics["cy"]) / intrinsics["fy"],
                     -np.ones_like(u)], axis=-1).astype(np.float32)


def _plain_material():
    import bpy

    material = bpy.data.materials.get("geometry pass") or bpy.data.materials.new("geometry pass")
    return material


def _render(name: str) -> dict[str, np.ndarray]:
    import bpy

    path = Path(_scratch.name) / f"{name}.exr"
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return read_exr_channels(path)
