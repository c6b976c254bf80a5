"""Procedural training scenes with exact depth, normals and alpha: a small numpy ray caster.

Each sample is a room or an outdoor-like scene built from textured planes,
boxes and ellipsoids, lit by a point light or the sun with cast shadows. Most
have a "hero" subject 0.9-2.4 m in front, framed by the camera: a figure standing
on the floor or an object on a table, with metric sizes (so its distance can be
read from the photo) and often fur-like strands. The photo is rendered
2x2 supersampled, so object edges and strands give soft, partial alpha. In
some scenes the background is defocused behind the hero, as in portraits.

Ground truth, per pixel (camera space, OpenGL: +X right, +Y up, +Z toward the
viewer; the camera looks down -Z):
- depth: z-depth in metres (0 = invalid; the sky is invalid);
- normal: unit surface normal facing the camera (zero vector = invalid);
- alpha: the hero subject's coverage in [0, 1].

Everything is deterministic from the seed.
"""

from dataclasses import dataclass

import numpy as np

SKY_DEPTH = 0.0  # invalid
FAR_CLIP = 60.0  # metres; outdoor geometry beyond it counts as sky (fits 16-bit millimetre PNGs)
SUPERSAMPLING = 2
INDOOR_FRACTION = 0.9  # GenPercept's depth/normal training mix: Hypersim (indoor) 0.9, Virtual KITTI (outdoor) 0.1


@dataclass
class Shape:
    kind: str  # "plane" (room face / ground), "box" or "sphere" (unit cube / sphere through an affine map)
    matrix: np.ndarray  # local -> camera, 4x4 (planes: unused)
    material: dict
    plane_point: np.ndarray | None = None
    plane_normal: np.ndarray | None = None
    hero: bool = False


# ---------------------------------------------------------------- geometry


def _rotation(yaw, pitch=0.0, roll=0.0):
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def _affine(center, size, yaw=0.0, pitch=0.0, roll=0.0):
    matrix = np.eye(4)
    matrix[:3, :3] = _rotation(yaw, pitch, roll) @ np.diag(np.asarray(size, float) / 2.0)
    matrix[:3, 3] = center
    return matrix


def _intersect(shape: Shape, origins, directions):
    """Distance t along each ray (inf where missed) and the camera-space normal at the hit."""
    n = origins.shape[0]
    t = np.full(n, np.inf)
    normal = np.zeros((n, 3))
    if shape.kind == "plane":
        denom = directions @ shape.plane_normal
        safe = np.where(np.abs(denom) < 1e-9, -1e-9, denom)
        hit_t = ((shape.plane_point - origins) @ shape.plane_normal) / safe
        t = np.where((denom < 0) & (hit_t > 1e-4), hit_t, np.inf)  # only the face looking at the ray
        normal[:] = shape.plane_normal
        return t, normal
    # Cull with the bounding sphere first; most rays miss a small object.
    centre = shape.matrix[:3, 3]
    radius = np.linalg.norm(shape.matrix[:3, :3], axis=0).max() * (np.sqrt(3) if shape.kind == "box" else 1.0)
    to_centre = centre - origins
    along = np.einsum("ij,ij->i", to_centre, directions)
    candidates = np.nonzero((np.einsum("ij,ij->i", to_centre, to_centre) - along**2 <= radius**2) & (along > -radius))[0]
    if candidates.size == 0:
        return t, normal
    inverse = np.linalg.inv(shape.matrix)
    o = origins[candidates] @ inverse[:3, :3].T + inverse[:3, 3]
    d = directions[candidates] @ inverse[:3, :3].T
    if shape.kind == "sphere":
        a = np.einsum("ij,ij->i", d, d)
        b = np.einsum("ij,ij->i", o, d)
        c = np.einsum("ij,ij->i", o, o) - 1.0
        disc = b * b - a * c
        root = np.sqrt(np.maximum(disc, 0.0))
        t0, t1 = (-b - root) / a, (-b + root) / a
        hit_t = np.where(t0 > 1e-4, t0, np.where(t1 > 1e-4, t1, np.inf))
        hit_t = np.where(disc > 0, hit_t, np.inf)
        local_normal = o + np.where(np.isfinite(hit_t), hit_t, 0.0)[:, None] * d
    else:  # unit cube [-1, 1]^3 by slabs, one axis at a time
        t_near, t_far = np.full(len(candidates), -np.inf), np.full(len(candidates), np.inf)
        for axis in range(3):
            inv_d = 1.0 / np.where(np.abs(d[:, axis]) < 1e-12, 1e-12, d[:, axis])
            lo, hi = (-1.0 - o[:, axis]) * inv_d, (1.0 - o[:, axis]) * inv_d
            t_near = np.maximum(t_near, np.minimum(lo, hi))
            t_far = np.minimum(t_far, np.maximum(lo, hi))
        hit = (t_near <= t_far) & (t_far > 1e-4)
        hit_t = np.where(hit, np.where(t_near > 1e-4, t_near, t_far), np.inf)
        point = o + np.where(np.isfinite(hit_t), hit_t, 0.0)[:, None] * d
        axis = np.abs(point).argmax(axis=1)
        local_normal = np.zeros_like(point)
        rows = np.arange(len(candidates))
        local_normal[rows, axis] = np.sign(point[rows, axis])
    world_normal = local_normal @ inverse[:3, :3]  # inverse-transpose maps normals
    world_normal /= np.linalg.norm(world_normal, axis=1, keepdims=True) + 1e-12
    t[candidates] = hit_t
    normal[candidates] = world_normal
    return t, normal


def _cast(shapes, origins, directions, skip_hero=False):
    best_t = np.full(origins.shape[0], np.inf)
    best_normal = np.zeros_like(origins)
    best_index = np.full(origins.shape[0], -1)
    for index, shape in enumerate(shapes):
        if skip_hero and shape.hero:
            continue
        t, normal = _intersect(shape, origins, directions)
        closer = t < best_t
        best_t = np.where(closer, t, best_t)
        best_normal[closer] = normal[closer]
        best_index[closer] = index
    return best_t, best_normal, best_index


# ---------------------------------------------------------------- appearance


def _value_noise(points, scale, seed):
    """Smooth 3D value noise in [0, 1] at ``points`` [N,3]."""
    p = points * scale
    cell = np.floor(p).astype(np.int64)
    frac = p - cell
    frac = frac * frac * (3 - 2 * frac)

    def lattice(offset):
        c = cell + offset
        h = (c[:, 0] * 73856093) ^ (c[:, 1] * 19349663) ^ (c[:, 2] * 83492791) ^ (seed * 2654435761)
        h = (h ^ (h >> 13)) * 1274126177
        return ((h ^ (h >> 16)) & 0xFFFF) / 65535.0

    result = 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1]) * (
                    frac[:, 2] if dz else 1 - frac[:, 2])
                result = result + weight * lattice(np.array([dx, dy, dz]))
    return result


def _random_material(rng, kind=None):
    kind = kind or rng.choice(["plain", "checker", "stripes", "noise", "wood", "tiles", "marble"])
    hue = rng.random()
    base = np.clip(_hsv(hue, rng.uniform(0.1, 0.8), rng.uniform(0.35, 0.95)), 0, 1)
    other = np.clip(_hsv((hue + rng.uniform(0.05, 0.5)) % 1, rng.uniform(0.05, 0.7), rng.uniform(0.15, 0.9)), 0, 1)
    return {"kind": kind, "base": base, "other": other, "scale": rng.uniform(1.5, 8.0), "seed": int(rng.integers(1 << 20)),
            "shine": rng.uniform(0.0, 0.5)}


def _hsv(h, s, v):
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _albedo(material, points):
    kind, scale = material["kind"], material["scale"]
    base, other = material["base"], material["other"]
    if kind == "plain":
        mix = 0.15 * _value_noise(points, scale * 3, material["seed"])
    elif kind == "checker":
        mix = (np.floor(points * scale).sum(axis=1) % 2).astype(float)
    elif kind == "stripes":
        mix = 0.5 + 0.5 * np.sign(np.sin(points[:, 0] * scale * 3 + points[:, 2] * scale))
    elif kind == "noise":
        mix = _value_noise(points, scale, material["seed"]) * 0.6 + _value_noise(points, scale * 4, material["seed"] + 1) * 0.4
    elif kind == "wood":
        rings = np.hypot(points[:, 0], points[:, 2]) * scale * 4 + 3 * _value_noise(points, scale, material["seed"])
        mix = 0.5 + 0.5 * np.sin(rings)
    elif kind == "tiles":
        cell = points * scale
        grout = np.min(np.abs(cell - np.round(cell)), axis=1) < 0.04
        mix = np.where(grout, 1.0, 0.2 * _value_noise(points, scale * 2, material["seed"]))
    else:  # marble
        mix = 0.5 + 0.5 * np.sin(points[:, 0] * scale * 2 + 6 * _value_noise(points, scale, material["seed"]))
    return base * (1 - mix[:, None]) + other * mix[:, None]


# ---------------------------------------------------------------- scenes


def _room(rng):
    width, depth, height = rng.uniform(3, 8), rng.uniform(4, 10), rng.uniform(2.4, 3.5)
    camera_height = rng.uniform(1.0, 1.9)
    yaw, pitch = rng.uniform(-0.6, 0.6), rng.uniform(-0.35, 0.1)
    camera_x = rng.uniform(-width / 2 + 0.5, width / 2 - 0.5)
    # World: y up, floor at 0; camera at (camera_x, camera_height, depth/2 - 0.3) looking toward -z.
    camera = np.array([camera_x, camera_height, depth / 2 - rng.uniform(0.3, 1.0)])
    floor, walls, ceiling = (_random_material(rng, k) for k in (rng.choice(["wood", "tiles", "checker", "noise"]),
                                                                  rng.choice(["plain", "noise", "stripes"]), "plain"))
    faces = [((0, 0, 0), (0, 1, 0), floor), ((0, height, 0), (0, -1, 0), ceiling),
             ((-width / 2, 0, 0), (1, 0, 0), walls), ((width / 2, 0, 0), (-1, 0, 0), walls),
             ((0, 0, -depth / 2), (0, 0, 1), walls), ((0, 0, depth / 2), (0, 0, -1), walls)]
    shapes = [("plane", point, normal, material) for point, normal, material in faces]
    for _ in range(rng.integers(2, 7)):  # furniture on the floor
        size = rng.uniform([0.3, 0.3, 0.3], [1.6, 1.2, 1.2])
        center = (rng.uniform(-width / 2 + size[0] / 2, width / 2 - size[0] / 2), size[1] / 2,
                  rng.uniform(-depth / 2 + size[2] / 2, depth / 2 - 1.5))
        kind = "box" if rng.random() < 0.7 else "sphere"
        shapes.append((kind, _affine(center, size, rng.uniform(0, np.pi)), _random_material(rng)))
    for _ in range(rng.integers(0, 3)):  # pictures and shelves on the back or side walls
        size = (rng.uniform(0.4, 1.5), rng.uniform(0.3, 1.0), 0.05)
        center = (rng.uniform(-width / 2 + 1, width / 2 - 1), rng.uniform(1.0, height - 0.5), -depth / 2 + 0.03)
        shapes.append(("box", _affine(center, size), _random_material(rng)))
    light = ("point", np.array([rng.uniform(-width / 3, width / 3), height - 0.3, rng.uniform(-depth / 3, depth / 4)]))
    return camera, yaw, pitch, shapes, light, None, (width, depth)


def _outdoor(rng):
    camera = np.array([0.0, rng.uniform(1.2, 2.5), 0.0])
    yaw, pitch = rng.uniform(-np.pi, np.pi), rng.uniform(-0.25, 0.05)
    ground = _random_material(rng, rng.choice(["noise", "tiles", "checker", "stripes"]))
    shapes = [("plane", np.zeros(3), np.array([0.0, 1.0, 0.0]), ground)]
    for _ in range(rng.integers(4, 12)):
        distance, angle = rng.uniform(5, 40), yaw + rng.uniform(-0.8, 0.8)
        position = camera + distance * np.array([-np.sin(angle), 0, -np.cos(angle)])
        if rng.random() < 0.5:  # building
            size = rng.uniform([3, 3, 3], [10, 15, 10])
            shapes.append(("box", _affine((position[0], size[1] / 2, position[2]), size, rng.uniform(0, np.pi)),
                           _random_material(rng, rng.choice(["tiles", "plain", "stripes"]))))
        else:  # tree: trunk and crown
            crown = rng.uniform(1.5, 4.0)
            shapes.append(("box", _affine((position[0], 1.5, position[2]), (0.3, 3.0, 0.3)), _random_material(rng, "wood")))
            leaves = _random_material(rng, "noise")
            leaves["base"], leaves["other"] = np.array([0.15, 0.45, 0.12]), np.array([0.3, 0.6, 0.2])
            shapes.append(("sphere", _affine((position[0], 3.0 + crown / 2, position[2]), (crown, crown * 1.2, crown)), leaves))
    sun = _rotation(rng.uniform(-np.pi, np.pi), -rng.uniform(0.3, 1.2)) @ np.array([0.0, 0.0, -1.0])
    sky = (np.array([0.35, 0.55, 0.9]) * rng.uniform(0.7, 1.1), np.array([0.85, 0.9, 0.95]))
    return camera, yaw, pitch, shapes, ("sun", -sun), sky, None


def _subject(rng, camera, yaw, room_size):
    """The foreground subject in world coordinates: a figure standing on the floor or an object on a table.

    Subjects have metric sizes and rest on the ground, as real ones do, so their
    distance is observable from the image (apparent size, floor contact);
    returns (subject shapes, supporting shapes, height of the subject's centre).
    """
    distance, angle = rng.uniform(0.9, 2.4), yaw + rng.uniform(-0.35, 0.35)
    x, z = camera[[0, 2]] + distance * np.array([-np.sin(angle), -np.cos(angle)])
    if room_size is not None:  # stay inside the room
        width, depth = room_size
        x, z = np.clip(x, -width / 2 + 0.5, width / 2 - 0.5), max(z, -depth / 2 + 0.5)
    turn = rng.uniform(0, np.pi)
    if rng.random() < 0.5:  # a figure: body and head, 0.5-1.8 m tall (pets, children, adults, plants)
        height, width = rng.uniform(0.5, 1.8), rng.uniform(0.3, 0.55)
        head_size = min(0.3, 0.25 * height)
        body = ("sphere", _affine((x, 0.4 * height, z), (width, 0.8 * height, width * rng.uniform(0.6, 1.0)), turn),
                _random_material(rng))
        head = ("sphere", _affine((x, 0.8 * height + 0.4 * head_size, z), (head_size, head_size * 1.15, head_size), turn),
                _random_material(rng))
        return [body, head], [], 0.55 * height
    table_height, size = rng.uniform(0.4, 1.0), rng.uniform(0.25, 0.6, size=3)
    table = ("box", _affine((x, table_height / 2, z), (rng.uniform(0.5, 1.2), table_height, rng.uniform(0.4, 0.9)), turn),
             _random_material(rng))
    thing = ("sphere" if rng.random() < 0.6 else "box",
             _affine((x, table_height + size[1] / 2, z), size, turn + rng.uniform(-0.5, 0.5)), _random_material(rng))
    return [thing], [table], table_height + size[1] / 2


def _blocks(shape, camera, subject, clearance=0.6):
    """Whether a world shape stands on the subject or between it and the camera (ground-plane footprints)."""
    kind, matrix, *_ = shape
    if kind == "plane":
        return False
    radius = np.linalg.norm(matrix[:3, :3][[0, 2]], axis=0).max()
    centre, sight = matrix[[0, 2], 3], subject - camera
    along = np.clip((centre - camera) @ sight / (sight @ sight), 0.0, 1.0)
    return np.hypot(*(camera + along * sight - centre)) < radius + clearance


def random_scene(seed: int):
    """A scene description: shapes in camera space, light, sky, hero, camera intrinsics, defocus."""
    rng = np.random.default_rng(seed)
    camera, yaw, pitch, world_shapes, light, sky, room_size = (_room if rng.random() < INDOOR_FRACTION else _outdoor)(rng)
    has_hero = rng.random() < 0.85
    hero_shapes = []
    if has_hero:
        hero_shapes, supports, subject_height = _subject(rng, camera, yaw, room_size)
        subject = hero_shapes[0][1][[0, 2], 3]
        world_shapes = [shape for shape in world_shapes if not _blocks(shape, camera[[0, 2]], subject)] + supports
        # The photographer frames the subject: look at it, give or take.
        distance = np.hypot(*(subject - camera[[0, 2]]))
        pitch = np.clip(np.arctan2(subject_height - camera[1], distance) + rng.uniform(-0.12, 0.12), -0.7, 0.2)
    to_camera = _rotation(yaw, pitch).T  # world -> camera rotation

    def point(p):
        return to_camera @ (np.asarray(p, float) - camera)

    world_to_camera = np.eye(4)
    world_to_camera[:3, :3], world_to_camera[:3, 3] = to_camera, -to_camera @ camera
    shapes = []
    for kind, *rest in world_shapes:
        if kind == "plane":
            plane_point, plane_normal, material = rest
            shapes.append(Shape("plane", np.eye(4), material, point(plane_point), to_camera @ np.asarray(plane_normal, float)))
        else:
            matrix, material = rest
            shapes.append(Shape(kind, world_to_camera @ matrix, material))
    shapes += [Shape(kind, world_to_camera @ matrix, material, hero=True) for kind, matrix, material in hero_shapes]
    light_kind, light_value = light
    light = (light_kind, point(light_value) if light_kind == "point" else to_camera @ light_value)
    fov = np.radians(rng.uniform(45, 75))
    return {"shapes": shapes, "light": light, "sky": sky, "fov": fov, "defocus": has_hero and rng.random() < 0.5,
            "strands": has_hero and rng.random() < 0.6, "seed": seed, "exposure": rng.uniform(0.7, 1.1),
            "light_power": rng.uniform(2.0, 4.0), "ambient": rng.uniform(0.12, 0.3) if sky is None else rng.uniform(0.3, 0.45),
            "fog": rng.uniform(60, 250)}


# ---------------------------------------------------------------- rendering


def _shade(scene, points, normals, indices, directions):
    shapes, (light_kind, light_value) = scene["shapes"], scene["light"]
    colour = np.zeros_like(points)
    for index in np.unique(indices[indices >= 0]):
        mask = indices == index
        colour[mask] = _albedo(shapes[index].material, _local_point(shapes[index], points[mask]))
    if light_kind == "point":
        to_light = light_value - points
        distance = np.linalg.norm(to_light, axis=1, keepdims=True)
        to_light /= distance
        strength = scene["light_power"] / (1.0 + 0.15 * distance[:, 0] ** 2)
    else:
        to_light = np.broadcast_to(light_value / np.linalg.norm(light_value), points.shape)
        distance = np.full((points.shape[0], 1), np.inf)
        strength = np.full(points.shape[0], scene["light_power"] * 0.4)
    lambert = np.clip(np.einsum("ij,ij->i", normals, to_light), 0, None)
    shadow_t, _, _ = _cast(shapes, points + normals * 1e-3, np.ascontiguousarray(to_light))
    lit = shadow_t >= distance[:, 0] - 1e-3
    half = to_light - directions
    half /= np.linalg.norm(half, axis=1, keepdims=True) + 1e-9
    shine = np.array([shapes[i].material["shine"] for i in indices])
    specular = shine * np.clip(np.einsum("ij,ij->i", normals, half), 0, None) ** 40
    ambient = scene["ambient"] * (0.8 + 0.2 * normals[:, 1])
    return colour * (ambient + strength * lambert * lit)[:, None] + (specular * lit * strength * 0.5)[:, None]


def _local_point(shape, points):
    if shape.kind == "plane":
        return points
    inverse = np.linalg.inv(shape.matrix)
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def _sky(scene, directions):
    if scene["sky"] is None:
        return np.zeros_like(directions)
    top, horizon = scene["sky"]
    up = np.clip(directions[:, 1] / np.linalg.norm(directions, axis=1), 0, 1)[:, None] ** 0.5
    return horizon * (1 - up) + top * up


def _strands(rng, alpha_hi, height, width):
    """Fur-like strands around the hero silhouette: thin anti-aliased lines of partial coverage."""
    import cv2

    edge = cv2.morphologyEx((alpha_hi > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(edge)
    coverage = np.zeros((height, width), np.float32)
    if len(xs) == 0:
        return coverage
    centre = np.array([xs.mean(), ys.mean()])
    for i in rng.choice(len(xs), size=min(len(xs), 150), replace=False):
        start = np.array([xs[i], ys[i]], float)
        outward = start - centre
        outward = outward / (np.linalg.norm(outward) + 1e-6) + rng.normal(0, 0.35, 2)
        end = start + outward * rng.uniform(4, 14) * height / 256
        cv2.line(coverage, tuple(int(v) for v in start), tuple(int(v) for v in end), float(rng.uniform(0.5, 1.0)), 1,
                 cv2.LINE_AA)
    return coverage


def render(scene, height=192, width=256):
    """Render ``scene``: RGB uint8 [H,W,3], depth [H,W] metres, normal [H,W,3], alpha [H,W], intrinsics."""
    import cv2

    ss = SUPERSAMPLING
    hi_h, hi_w = height * ss, width * ss
    focal = 0.5 * width / np.tan(scene["fov"] / 2)
    fx = fy = focal
    cx, cy = width / 2, height / 2
    v, u = np.mgrid[0:hi_h, 0:hi_w]
    directions = np.stack([((u + 0.5) / ss - cx) / fx, -((v + 0.5) / ss - cy) / fy, -np.ones_like(u, float)], axis=-1)
    directions = directions.reshape(-1, 3) / np.linalg.norm(directions.reshape(-1, 3), axis=1, keepdims=True)
    origins = np.zeros_like(directions)
    shapes = scene["shapes"]

    def layer(rays, skip_hero):
        ray_directions = directions[rays]
        t, normals, indices = _cast(shapes, origins[rays], ray_directions, skip_hero)
        hit = np.isfinite(t) & (t * -ray_directions[:, 2] < FAR_CLIP)  # beyond the far clip is sky
        colour = _sky(scene, ray_directions)
        sky_colour = colour.copy()
        points = ray_directions * np.where(hit, t, 0)[:, None]
        colour[hit] = _shade(scene, points[hit], normals[hit], indices[hit], ray_directions[hit])
        if scene["sky"] is not None:  # aerial perspective: distant things fade into the horizon colour
            haze = 1.0 - np.exp(-np.where(hit, t, 0) / scene["fog"])[:, None]
            colour = np.where(hit[:, None], colour * (1 - haze) + sky_colour * haze, colour)
        return colour, t, normals, indices, hit

    flat_colour, t, normals, indices, hit = layer(slice(None), skip_hero=False)
    rng = np.random.default_rng(scene["seed"] + 7)
    colour, alpha_hi = _composite_hero(scene, layer, flat_colour, indices, (hi_h, hi_w), rng)
    rgb = _camera_response(cv2.resize(colour, (width, height), interpolation=cv2.INTER_AREA), scene, rng)
    alpha = cv2.resize(alpha_hi, (width, height), interpolation=cv2.INTER_AREA)
    # Geometry from the centre sub-sample of each pixel (no mixed depths at edges).
    pick = (slice(ss // 2, None, ss), slice(ss // 2, None, ss))
    z = (directions[:, 2] * np.where(hit, t, 0)).reshape(hi_h, hi_w)[pick]
    depth = np.where(hit.reshape(hi_h, hi_w)[pick], -z, SKY_DEPTH).astype(np.float32)
    normal = normals.reshape(hi_h, hi_w, 3)[pick]
    facing = np.einsum("hwc,hwc->hw", normal, directions.reshape(hi_h, hi_w, 3)[pick]) > 0
    normal = np.where(facing[..., None], -normal, normal)  # seen from inside (room faces are one-sided anyway)
    normal = np.where((depth > 0)[..., None], normal, 0).astype(np.float32)
    return {"rgb": np.round(rgb * 255).astype(np.uint8), "depth": depth, "normal": normal,
            "alpha": np.clip(alpha, 0, 1).astype(np.float32), "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy}}


def _composite_hero(scene, layer, flat_colour, indices, size, rng):
    """The supersampled photo with the hero subject over its background (defocused, with fur-like strands where the
    scene asks for them), and the hero's alpha [hi_h, hi_w]. ``layer(rays, skip_hero)`` casts rays again."""
    import cv2

    hi_h, hi_w = size
    shapes = scene["shapes"]
    colour = flat_colour.reshape(hi_h, hi_w, 3)
    hero_indices = [i for i, s in enumerate(shapes) if s.hero]
    hero_rays = np.isin(indices, hero_indices)
    hero_hi = hero_rays.astype(np.float32).reshape(hi_h, hi_w)
    if not (scene["defocus"] or scene["strands"]):
        return colour, hero_hi
    background = flat_colour.copy()  # what the hero hides: only its rays are cast again
    background[hero_rays] = layer(np.nonzero(hero_rays)[0], skip_hero=True)[0]
    background = background.reshape(hi_h, hi_w, 3)
    if scene["defocus"]:
        background = cv2.GaussianBlur(background, (0, 0), sigmaX=rng.uniform(2.0, 5.0) * SUPERSAMPLING)
    alpha_hi = hero_hi
    hero_colour = colour
    if scene["strands"]:
        strands = _strands(rng, hero_hi, hi_h, hi_w)
        strand_colour = np.clip(shapes[hero_indices[0]].material["base"] * rng.uniform(0.6, 1.3), 0, 1)
        hero_colour = np.where(hero_hi[..., None] > 0, colour, strand_colour)
        alpha_hi = np.maximum(hero_hi, strands)
    return hero_colour * alpha_hi[..., None] + background * (1 - alpha_hi[..., None]), alpha_hi


def _camera_response(rgb, scene, rng):
    """Linear radiance -> a photo in [0, 1]: exposure, soft highlight roll-off, gamma, sensor noise."""
    rgb = np.clip(rgb * scene["exposure"], 0, None)
    rgb = rgb / (1 + rgb * 0.25)  # soft highlight roll-off
    rgb = np.clip(rgb, 0, 1) ** (1 / 2.2)
    return np.clip(rgb + rng.normal(0, 0.01, rgb.shape), 0, 1)
