"""What a camera does to the rendered light: lens distortion, defocus, motion blur, exposure, white balance,
vignetting, sensor noise, tone curve and JPEG compression.

All but the lens distortion change the photo only, after rendering, so depth, normals and alpha stay those of the
sharp pinhole render (the maps a photo's scene has, not its blur). Lens distortion moves pixels, so it is applied
to the photo and every map alike (maps by nearest neighbour, alpha linearly); the camera file then records ``k1``:
a pixel at normalised distorted position p looks along the pinhole ray through p * (1 + k1 * |p|^2).
"""

import numpy as np

DEFOCUS_LEVELS = 6


def random_effects(rng: np.random.Generator, size, layout) -> dict:
    width = size[0]
    portrait = bool(layout.subject and (layout.subject.get("portrait") or layout.kind == "backdrop"))
    effects = {
        "exposure_ev": float(rng.normal(0.0, 0.45)),
        "white_balance": np.exp(rng.normal(0.0, 0.06, 3)).round(4).tolist(),
        "vignetting": float(rng.uniform(0.0, 0.45)),
        "shot_noise": float(np.exp(rng.uniform(np.log(2e-4), np.log(3e-3)))),
        "read_noise": float(rng.uniform(0.0, 0.004)),
        "tone": str(rng.choice(["filmic", "reinhard", "srgb"], p=[0.6, 0.25, 0.15])),
        "contrast": float(rng.uniform(0.9, 1.15)),
        "jpeg_quality": int(rng.integers(55, 96)) if rng.random() < 0.5 else None,
        "seed": int(rng.integers(2**31)),
    }
    if rng.random() < (0.6 if portrait else 0.25):
        # circle of confusion radius, pixels per dioptre away from focus; on the subject if there is one
        effects["defocus"] = {"blur": float(rng.uniform(0.5, 4.0) * width / 256),
                              "focus": None if layout.subject else float(rng.uniform(0.8, 6.0))}
    if rng.random() < 0.12:
        effects["motion_blur"] = {"length": float(rng.uniform(1.5, 7.0) * width / 256),
                                  "angle": float(rng.uniform(0, np.pi))}
    if rng.random() < 0.3:
        effects["k1"] = float(rng.uniform(-0.15, -0.02))  # barrel: every output pixel sees inside the render
    return effects


def distort_maps(maps: dict, k1: float, intrinsics: dict) -> dict:
    """Every map of ``maps`` ({"rgb"/"alpha": linear, "depth"/"normal": exact}) seen through the barrel lens."""
    import cv2

    height, width = next(iter(maps.values())).shape[:2]
    u, v = np.meshgrid(np.arange(width, dtype=np.float32) + 0.5, np.arange(height, dtype=np.float32) + 0.5)
    x, y = (u - intrinsics["cx"]) / intrinsics["fx"], (v - intrinsics["cy"]) / intrinsics["fy"]
    factor = 1.0 + k1 * (x * x + y * y)
    map_x = (x * factor * intrinsics["fx"] + intrinsics["cx"] - 0.5).astype(np.float32)
    map_y = (y * factor * intrinsics["fy"] + intrinsics["cy"] - 0.5).astype(np.float32)
    distorted = {}
    for name, values in maps.items():
        interpolation = cv2.INTER_NEAREST if name in ("depth", "normal") else cv2.INTER_LINEAR
        distorted[name] = cv2.remap(values, map_x, map_y, interpolation, borderMode=cv2.BORDER_REPLICATE)
    return distorted


def develop(linear_rgb: np.ndarray, depth: np.ndarray, effects: dict, focus_depth: float | None) -> np.ndarray:
    """Linear RGB [H,W,3] -> the camera's photo, uint8 [H,W,3]."""
    import cv2

    rng = np.random.default_rng(effects["seed"])
    rgb = np.maximum(linear_rgb.astype(np.float32), 0.0)
    if "defocus" in effects:
        focus = effects["defocus"]["focus"] or focus_depth or 2.0
        rgb = _defocus(rgb, depth, focus, effects["defocus"]["blur"])
    if "motion_blur" in effects:
        rgb = _motion_blur(rgb, **effects["motion_blur"])
    luminance = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    key = np.exp(np.mean(np.log(luminance + 1e-4)))  # auto exposure: the log-average luminance -> mid grey
    rgb = rgb * (0.18 / max(key, 1e-4) * 2.0 ** effects["exposure_ev"]) * np.asarray(effects["white_balance"], np.float32)
    rgb = rgb * _vignette(*rgb.shape[:2], effects["vignetting"])[..., None]
    noise_sd = np.sqrt(rgb * effects["shot_noise"] + effects["read_noise"] ** 2)
    rgb = np.maximum(rgb + rng.normal(size=rgb.shape).astype(np.float32) * noise_sd, 0.0)
    photo = _tone(rgb, effects["tone"], effects["contrast"])
    photo = np.round(np.clip(photo, 0, 1) * 255).astype(np.uint8)
    if effects["jpeg_quality"]:
        _, encoded = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, effects["jpeg_quality"]])
        photo = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()
    return photo


def _defocus(rgb, depth, focus: float, blur: float):
    """Thin-lens blur: circle of confusion blur x |1/depth - 1/focus| pixels (sky: 1/depth = 0), layered by level."""
    import cv2

    inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-3), 0.0)
    radius = np.minimum(blur * np.abs(inverse - 1.0 / focus), 3 * blur)
    top = float(radius.max())
    if top < 0.5:
        return rgb
    levels = np.linspace(0.0, top, DEFOCUS_LEVELS)
    blurred = [rgb] + [cv2.filter2D(rgb, -1, _disc(r)) for r in levels[1:]]
    position = radius / (top / (DEFOCUS_LEVELS - 1))
    low = np.clip(np.floor(position).astype(int), 0, DEFOCUS_LEVELS - 2)
    weight = (position - low)[..., None]
    stack = np.stack(blurred)
    rows, cols = np.indices(depth.shape)
    return (stack[low, rows, cols] * (1 - weight) + stack[low + 1, rows, cols] * weight).astype(np.float32)


def _disc(radius: float) -> np.ndarray:
    size = int(np.ceil(radius)) * 2 + 1
    y, x = np.mgrid[:size, :size] - size // 2
    kernel = np.clip(radius + 0.5 - np.sqrt(x * x + y * y), 0, 1).astype(np.float32)
    return kernel / kernel.sum()


def _motion_blur(rgb, length: float, angle: float):
    import cv2

    size = int(np.ceil(length)) * 2 + 1
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    for t in np.linspace(-length / 2, length / 2, 4 * size):
        kernel[int(round(centre + t * np.sin(angle))), int(round(centre + t * np.cos(angle)))] += 1
    return cv2.filter2D(rgb, -1, kernel / kernel.sum())


def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    y, x = np.mgrid[:height, :width].astype(np.float32)
    r2 = ((x + 0.5 - width / 2) ** 2 + (y + 0.5 - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    return 1.0 - strength * r2 ** 1.5


def _tone(rgb, tone: str, contrast: float):
    if tone == "filmic":  # ACES fit (Narkowicz 2015)
        mapped = rgb * (2.51 * rgb + 0.03) / (rgb * (2.43 * rgb + 0.59) + 0.14)
    elif tone == "reinhard":
        mapped = rgb / (1.0 + rgb)
        mapped = mapped * 1.6
    else:
        mapped = rgb
    mapped = np.clip(mapped, 0, 1)
    encoded = np.where(mapped <= 0.0031308, 12.92 * mapped, 1.055 * np.power(mapped, 1 / 2.4) - 0.055)
    return np.clip(0.5 + (encoded - 0.5) * contrast, 0, 1)
