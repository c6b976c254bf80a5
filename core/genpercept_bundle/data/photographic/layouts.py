"""Scene layouts: what is where in a room, a street or in front of an HDRI backdrop, drawn from a seed.

A layout is plain data (numpy and dicts, no Blender), so it can be printed, tested and reproduced: the renderer
(scenes.py) only builds what the layout says. World coordinates are Blender's: metres, +Z up, the floor or
ground at z = 0. Catalogue models (SweetHome3D) face -Y after import, so a yaw of 0 turns their front to -Y.

- room: a box room 3-7 m wide, its wall behind the camera left open to the HDRI (the room's window), textured
  floor, walls and ceiling, furniture against the walls and free-standing, ceiling lights;
- street: a road with kerbs and sidewalks, building blocks with windowed or textured facades, parked and moving
  vehicles, trees and hedges, street lamps, under an outdoor HDRI or an analytic sky with its sun;
- backdrop: only the HDRI, for portrait-style composites (the background is the environment, far away).

Any of them may hold a subject (subjects.py) that is rendered on its own and composited over the background, the
way matting data sets are made.
"""

from dataclasses import dataclass, field

import numpy as np

from .camera_effects import random_effects
from .cameras import Camera
from .materials import random_material
from .subjects import place_subject, random_subject

OUTDOOR_HDRIS = ("bridge", "city", "dawn", "esplanade", "forest", "park", "sky", "sunrise", "sunset", "venice", "night",
                 "courtyard")
STREET_FURNITURE_WORDS = ("tree", "hedge", "bush", "palm", "street", "bench", "hydrant", "bin", "lamp", "plant",
                          "bollard", "sign", "mailbox")
KIND_WEIGHTS = {"room": 0.5, "street": 0.3, "backdrop": 0.2}
SUBJECT_CHANCE = {"room": 0.45, "street": 0.35, "backdrop": 1.0}
ROOM_TYPES = {"living": ("Living room", "Office"), "bedroom": ("Bedroom", "Living room"),
              "kitchen": ("Kitchen",), "bathroom": ("Bathroom",), "office": ("Office", "Living room")}


@dataclass
class Slab:
    """A box-shaped surface (floor, wall, road, kerb, building block), its size in metres."""
    name: str
    centre: tuple
    size: tuple
    material: dict
    yaw: float = 0.0


@dataclass
class Model:
    """A catalogue model standing at ``location`` (its bottom centre), scaled to ``size`` (w, d, h metres)."""
    asset: dict
    location: tuple
    yaw: float
    size: tuple


@dataclass
class Lamp:
    kind: str  # "AREA", "POINT", "SUN"
    location: tuple
    rotation: tuple  # Euler XYZ, radians (area lights and the sun shine down their -Z)
    energy: float  # W (area, point) or W/m^2 (sun)
    colour: tuple
    size: float = 0.5


@dataclass
class World:
    hdri: str | None  # assets-relative file; None: an analytic sky
    rotation: float  # about +Z, radians
    strength: float
    sky: dict | None = None  # {"type", "sun_elevation", "sun_rotation", "turbidity"} when hdri is None


@dataclass
class SceneLayout:
    kind: str
    seed: int
    camera: Camera
    world: World
    slabs: list[Slab] = field(default_factory=list)
    models: list[Model] = field(default_factory=list)
    lamps: list[Lamp] = field(default_factory=list)
    subject: dict | None = None  # subjects.random_subject's spec
    effects: dict = field(default_factory=dict)  # camera_effects.random_effects' spec


def random_layout(seed: int, assets, size=(256, 192)) -> SceneLayout:
    """The layout of scene ``seed`` drawn from ``assets`` (an AssetLibrary; test scenes get the held-out pool)."""
    rng = np.random.default_rng([seed, 27])
    kinds = list(KIND_WEIGHTS)
    kind = kinds[rng.choice(len(kinds), p=list(KIND_WEIGHTS.values()))]
    layout = {"room": room_layout, "street": street_layout, "backdrop": backdrop_layout}[kind](rng, assets, seed)
    if rng.random() < SUBJECT_CHANCE[kind]:
        layout.subject = random_subject(rng, assets)
        place_subject(rng, layout)
    layout.effects = random_effects(rng, size, layout)
    return layout


def _hdri(rng, assets, outdoor: bool | None = None) -> str:
    pool = assets.hdris
    if outdoor is not None:
        matching = [h for h in pool if (h["name"].split("-", 1)[1] in OUTDOOR_HDRIS) == outdoor]
        pool = matching or pool
    return pool[rng.integers(len(pool))]["file"]


def _pick(rng, items: list):
    return items[rng.integers(len(items))] if items else None


def room_layout(rng, assets, seed: int) -> SceneLayout:
    width, depth, height = rng.uniform(3.0, 7.0), rng.uniform(3.5, 8.0), rng.uniform(2.4, 3.2)
    textures, wall = assets.textures, 0.1
    wall_material = random_material(rng, textures, "wall")
    slabs = [
        Slab("floor", (0, 0, -wall / 2), (width + 2 * wall, depth + 2 * wall, wall), random_material(rng, textures, "floor")),
        Slab("ceiling", (0, 0, height + wall / 2), (width + 2 * wall, depth + 2 * wall, wall),
             random_material(rng, textures, "wall", image_chance=0.1)),
        Slab("back wall", (0, depth / 2 + wall / 2, height / 2), (width + 2 * wall, wall, height), wall_material),
        Slab("left wall", (-width / 2 - wall / 2, 0, height / 2), (wall, depth, height),
             wall_material if rng.random() < 0.7 else random_material(rng, textures, "wall")),
        Slab("right wall", (width / 2 + wall / 2, 0, height / 2), (wall, depth, height), wall_material),
    ]
    if rng.random() < 0.6:
        index = int(rng.integers(2, 5))
        slabs[index:index + 1] = _wall_with_window(rng, slabs[index])
    if rng.random() < 0.5:  # a rug
        rug = (rng.uniform(1.2, min(3.0, width - 0.4)), rng.uniform(1.0, min(2.5, depth - 0.6)))
        slabs.append(Slab("rug", (rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.8), 0.006), (*rug, 0.012),
                          random_material(rng, textures, "cloth"), yaw=float(rng.normal(0, 0.1))))
    room_type = _pick(rng, list(ROOM_TYPES))
    furniture = [f for f in assets.furniture_in(*ROOM_TYPES[room_type], "Miscellaneous", "Lights")
                 if max(f["size"]) < 3.5]
    models = _furnish(rng, furniture, width, depth, height, count=int(rng.integers(4, 11)))
    lamps = []
    for _ in range(int(rng.integers(0, 3))):
        warm = rng.uniform(0.75, 1.0)
        lamps.append(Lamp("AREA", (rng.uniform(-width / 3, width / 3), rng.uniform(-depth / 4, depth / 3), height - 0.02),
                          (0, 0, 0), float(rng.uniform(40, 250)), (1.0, 0.85 + 0.15 * warm, 0.6 + 0.4 * warm),
                          float(rng.uniform(0.3, 1.2))))
    eye = (rng.uniform(-width / 2 + 0.4, width / 2 - 0.4), -depth / 2 + rng.uniform(0.2, 1.2), rng.uniform(0.9, 1.8))
    target = (rng.uniform(-width / 3, width / 3), rng.uniform(0.0, depth / 2), rng.uniform(0.4, 1.4))
    camera = Camera(eye, target, float(rng.uniform(50, 80)), float(rng.normal(0, 2)))
    world = World(_hdri(rng, assets), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.6, 2.0)))
    return SceneLayout("room", seed, camera, world, slabs, models, lamps)


def _wall_with_window(rng, wall: Slab) -> list[Slab]:
    """The wall as four slabs round a window opening (the HDRI, far away, seen through it)."""
    along = 0 if wall.size[0] > wall.size[1] else 1  # the wall's horizontal axis
    length, height = wall.size[along], wall.size[2]
    width = rng.uniform(0.8, max(0.9, min(2.6, length - 0.8)))
    sill, top = rng.uniform(0.4, 1.0), min(height - 0.25, rng.uniform(2.0, 2.4))
    middle = wall.centre[along] + rng.uniform(-length / 2 + width / 2 + 0.3, length / 2 - width / 2 - 0.3)
    low, high = wall.centre[along] - length / 2, wall.centre[along] + length / 2
    pieces = []  # (start, end) along the wall, (bottom, top) heights
    left, right = middle - width / 2, middle + width / 2
    for start, end, bottom, ceiling in ((low, left, 0.0, height), (right, high, 0.0, height), (left, right, 0.0, sill),
                                        (left, right, top, height)):
        centre, size = list(wall.centre), list(wall.size)
        centre[along], size[along] = (start + end) / 2, end - start
        centre[2], size[2] = (bottom + ceiling) / 2, ceiling - bottom
        pieces.append(Slab(wall.name, tuple(centre), tuple(size), wall.material))
    return pieces


def _furnish(rng, furniture: list[dict], width, depth, height, count: int) -> list[Model]:
    """Models against the back and side walls (backs to the wall) and a few free-standing, without overlaps."""
    placed: list[tuple] = []  # footprints (x0, y0, x1, y1)
    models = []
    for _ in range(count * 4):
        if len(models) >= count or not furniture:
            break
        asset = _pick(rng, furniture)
        w, d, h = asset["size"]
        if h + asset["elevation"] > height - 0.1:
            continue
        side = rng.choice(["back", "left", "right", "free"], p=[0.4, 0.2, 0.2, 0.2])
        if side == "back":
            x, y, yaw, extent = rng.uniform(-width / 2 + w / 2, width / 2 - w / 2), depth / 2 - d / 2 - 0.02, 0.0, (w, d)
        elif side == "left":
            x, y, yaw, extent = -width / 2 + d / 2 + 0.02, rng.uniform(-depth / 4, depth / 2 - w / 2), np.pi / 2, (d, w)
        elif side == "right":
            x, y, yaw, extent = width / 2 - d / 2 - 0.02, rng.uniform(-depth / 4, depth / 2 - w / 2), -np.pi / 2, (d, w)
        else:
            x, y = rng.uniform(-width / 2 + 0.8, width / 2 - 0.8), rng.uniform(-depth / 6, depth / 3)
            yaw, extent = rng.uniform(0, 2 * np.pi), (max(w, d),) * 2
        footprint = (x - extent[0] / 2, y - extent[1] / 2, x + extent[0] / 2, y + extent[1] / 2)
        inside = footprint[0] > -width / 2 - 0.05 and footprint[2] < width / 2 + 0.05 and footprint[3] < depth / 2 + 0.05
        if not inside or any(_overlap(footprint, other) for other in placed):
            continue
        placed.append(footprint)
        models.append(Model(asset, (float(x), float(y), asset["elevation"]), float(yaw), tuple(asset["size"])))
    return models


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def street_layout(rng, assets, seed: int) -> SceneLayout:
    textures = assets.textures
    road, walk = rng.uniform(6.0, 12.0), rng.uniform(2.0, 4.5)
    length, start = 160.0, -20.0
    grey = rng.uniform(0.06, 0.2)
    asphalt = {**random_material(rng, textures, "ground", image_chance=0.0), "kind": "asphalt",
               "colour": [round(grey, 4)] * 3, "colour2": [round(grey * 0.6, 4)] * 3}
    pavement = random_material(rng, textures, "ground", image_chance=0.5)
    slabs = [Slab("road", (0, start + length / 2, -0.05), (road, length, 0.1), asphalt)]
    for sign in (-1, 1):
        slabs.append(Slab("sidewalk", (sign * (road / 2 + walk / 2), start + length / 2, 0.06), (walk, length, 0.12),
                          pavement))
        slabs.append(Slab("verge", (sign * (road / 2 + walk + 40), start + length / 2, -0.05), (80, length, 0.1),
                          random_material(rng, textures, "ground")))
        y = start
        while y < start + length:
            block_width, block_depth = rng.uniform(6, 22), rng.uniform(8, 16)
            block_height = rng.uniform(4, 30) if rng.random() < 0.85 else rng.uniform(30, 60)
            setback = rng.uniform(0, 3) if rng.random() < 0.5 else 0.0
            x = sign * (road / 2 + walk + setback + block_depth / 2)
            facade = random_material(rng, textures, "facade", image_chance=0.3)
            if rng.random() < 0.6:
                facade.update(kind="windows", glass=np.clip(rng.uniform(0.02, 0.15, 3), 0, 1).round(4).tolist(),
                              window=[float(rng.uniform(0.8, 2.0)), float(rng.uniform(1.2, 2.2))],
                              spacing=[float(rng.uniform(2.5, 4.5)), float(rng.uniform(2.8, 3.6))])
            slabs.append(Slab("building", (x, y + block_width / 2, block_height / 2),
                              (block_depth, block_width, block_height), facade))
            y += block_width + (rng.uniform(0.5, 8) if rng.random() < 0.3 else 0.0)
    models = _street_furniture(rng, assets, road, walk, start, length)
    eye_x = rng.uniform(-road / 2 + 0.8, road / 2 - 0.8) if rng.random() < 0.7 else \
        rng.choice([-1, 1]) * (road / 2 + rng.uniform(0.5, walk - 0.3))
    eye = (eye_x, rng.uniform(-5, 5), rng.uniform(1.2, 2.2))
    models = [m for m in models if np.hypot(m.location[0] - eye[0], m.location[1] - eye[1]) > max(m.size[:2]) / 2 + 1.5]
    heading = rng.normal(0, 0.35) + (np.pi if rng.random() < 0.15 else 0.0)
    distance = rng.uniform(10, 40)
    target = (eye[0] + np.sin(heading) * distance, eye[1] + np.cos(heading) * distance,
              eye[2] + distance * np.tan(np.radians(rng.uniform(-8, 6))))
    camera = Camera(eye, tuple(float(v) for v in target), float(rng.uniform(55, 90)), float(rng.normal(0, 1.5)))
    lamps = []
    if rng.random() < 0.5:
        elevation = rng.uniform(np.radians(8), np.radians(65))
        sky = {"type": "HOSEK_WILKIE", "sun_elevation": float(elevation), "sun_rotation": float(rng.uniform(0, 2 * np.pi)),
               "turbidity": float(rng.uniform(2.0, 6.0))}
        world = World(None, 0.0, float(rng.uniform(0.15, 0.35)), sky)
        lamps.append(Lamp("SUN", (0, 0, 10), (np.pi / 2 - elevation, 0, sky["sun_rotation"]),
                          float(rng.uniform(2.5, 5.0)), (1.0, 0.95, 0.85), float(np.radians(rng.uniform(0.5, 3)))))
    else:
        world = World(_hdri(rng, assets, outdoor=True), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.7, 1.8)))
    return SceneLayout("street", seed, camera, world, slabs, models, lamps)


def _street_furniture(rng, assets, road, walk, start, length) -> list[Model]:
    vehicles = [v for v in assets.furniture_in("Vehicles") if v["size"][1] > 1.0]
    plants = [p for p in assets.furniture_in("Exterior", "Lights")
              if any(w in p["name"].lower() for w in STREET_FURNITURE_WORDS) and 0.5 < p["size"][2] < 14
              and max(p["size"][:2]) < 8]
    models = []
    y = start + rng.uniform(0, 6)
    while y < start + length and vehicles:
        asset = _pick(rng, vehicles)
        w, d, h = asset["size"]
        if w > 3.2:
            y += 4
            continue
        lane = rng.random()
        if lane < 0.5:  # parked by the kerb
            side = rng.choice([-1, 1])
            x, yaw = side * (road / 2 - w / 2 - 0.3), (0.0 if rng.random() < 0.8 else np.pi) + rng.normal(0, 0.03)
        else:  # in a lane
            side = -1 if lane < 0.75 else 1
            x, yaw = side * road / 4, (np.pi if side < 0 else 0.0) + rng.normal(0, 0.05)
        if rng.random() < 0.7:
            models.append(Model(asset, (float(x), float(y + d / 2), 0.0), float(yaw), tuple(asset["size"])))
        y += d + rng.uniform(1.0, 15.0)
    for sign in (-1, 1):
        y = start + rng.uniform(0, 10)
        while y < start + length and plants:
            asset = _pick(rng, plants)
            models.append(Model(asset, (float(sign * (road / 2 + rng.uniform(0.4, walk - 0.3))), float(y), 0.12),
                                float(rng.uniform(0, 2 * np.pi)), tuple(asset["size"])))
            y += rng.uniform(5, 20)
    return models


def backdrop_layout(rng, assets, seed: int) -> SceneLayout:
    """The environment alone: the camera looks at the HDRI near the horizon (a portrait's distant background)."""
    eye = (0.0, 0.0, 1.6)
    yaw, pitch = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(-10, 15))
    target = (float(np.sin(yaw) * np.cos(pitch)), float(np.cos(yaw) * np.cos(pitch)), 1.6 + float(np.sin(pitch)))
    camera = Camera(eye, target, float(rng.uniform(35, 70)), float(rng.normal(0, 2)))
    world = World(_hdri(rng, assets), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.6, 1.8)))
    return SceneLayout("backdrop", seed, camera, world)
