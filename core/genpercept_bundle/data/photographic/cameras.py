"""The scene camera: where it stands, what it looks at, and its axes (camera space is OpenGL's: +X right, +Y up,
+Z back toward the viewer, the camera looking down -Z; world space is Blender's, +Z up)."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Camera:
    location: tuple
    target: tuple
    fov: float  # horizontal, degrees
    roll: float = 0.0  # degrees


def camera_basis(camera: Camera) -> np.ndarray:
    """World -> camera rotation [3,3] (rows: camera +X right, +Y up, +Z back toward the viewer), roll included."""
    forward = np.asarray(camera.target, float) - np.asarray(camera.location, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    roll = np.radians(camera.roll)
    right, up = np.cos(roll) * right + np.sin(roll) * up, -np.sin(roll) * right + np.cos(roll) * up
    return np.stack([right, up, -forward])
