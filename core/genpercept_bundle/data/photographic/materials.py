"""Physically based materials: what a surface is made of (a plain dict drawn from the seed), and its Cycles shader.

A material spec is JSON-like so that a scene's description stays printable and testable without Blender::

    {"kind": "image", "texture": "furniture/.../oak.jpg", "tile": 0.8, "tint": [r, g, b], "roughness": 0.5, ...}
    {"kind": "brick" | "plaster" | "tiles" | "asphalt" | "paint", "colour": [...], "colour2": [...], "scale": ...}

Image textures are the photographic ones inside the furniture archives whose names say they are a tileable surface
(wood, stone, fabric...); procedural kinds fill in what those lack (brick facades, plaster, asphalt, painted walls).
Every material gets a small bump from procedural noise, so no surface is perfectly flat in the photo; the ground
truth normals come from the geometry (render_passes.py overrides materials for them).
"""

import numpy as np

SURFACE_WORDS = {  # texture file names -> what surfaces they can cover
    "floor": ("wood", "oak", "pine", "teak", "teca", "parquet", "plank", "marble", "granite", "tile", "tatami", "carpet",
              "rug", "beech", "alder", "cherry", "madera", "burlwood", "butcherblock", "pulido", "rojiza", "stone"),
    "wall": ("plain", "beige", "paneling", "fabric", "pattern", "marble", "wood", "tile", "stripes", "rojiza"),
    "ground": ("ground", "soil", "pebbles", "stones", "rock", "grass", "granite", "little_stones", "cave"),
    "facade": ("rojiza", "stone", "rock", "granite", "marble", "paneling", "wood", "plank"),
    "cloth": ("fabric", "denim", "leather", "cloth", "tecido", "red_checked", "sofa", "cushion", "sheet"),
}
PROCEDURAL_KINDS = {"floor": ("tiles", "paint"), "wall": ("plaster", "paint", "brick"), "ground": ("asphalt", "plaster"),
                    "facade": ("brick", "plaster", "paint", "tiles"), "cloth": ("paint",)}
PLANAR_KINDS = ("brick", "tiles", "windows")  # 2D patterns: they need the face's plane
PALETTES = {  # plausible albedos per role, linear RGB
    "floor": [(0.35, 0.22, 0.12), (0.5, 0.45, 0.4), (0.15, 0.1, 0.07), (0.6, 0.58, 0.55), (0.3, 0.3, 0.32)],
    "wall": [(0.8, 0.78, 0.72), (0.7, 0.72, 0.75), (0.75, 0.65, 0.5), (0.45, 0.55, 0.5), (0.85, 0.85, 0.85),
             (0.55, 0.35, 0.3)],
    "ground": [(0.12, 0.12, 0.12), (0.25, 0.24, 0.22), (0.35, 0.3, 0.25), (0.18, 0.2, 0.12)],
    "facade": [(0.5, 0.25, 0.18), (0.7, 0.65, 0.55), (0.4, 0.4, 0.42), (0.8, 0.75, 0.65), (0.35, 0.3, 0.28),
               (0.6, 0.5, 0.35)],
    "cloth": [(0.6, 0.1, 0.1), (0.1, 0.2, 0.5), (0.2, 0.2, 0.2), (0.8, 0.8, 0.75), (0.3, 0.45, 0.25), (0.7, 0.5, 0.2)],
}


def surface_textures(textures: list[dict], role: str) -> list[dict]:
    words = SURFACE_WORDS[role]
    return [t for t in textures if any(w in t["file"].rsplit("/", 1)[-1].lower() for w in words)]


def random_material(rng: np.random.Generator, textures: list[dict], role: str, image_chance: float = 0.6) -> dict:
    """A material for a surface of ``role`` (floor, wall, ground, facade, cloth)."""
    palette = PALETTES[role]
    colour = np.clip(np.array(palette[rng.integers(len(palette))]) * rng.uniform(0.7, 1.25, 3), 0.02, 0.95)
    spec = {"roughness": float(rng.uniform(0.35, 0.95)), "bump": float(rng.uniform(0.02, 0.25)),
            "colour": colour.round(4).tolist(), "scale": float(rng.uniform(0.5, 3.0))}
    candidates = surface_textures(textures, role)
    if candidates and rng.random() < image_chance:
        texture = candidates[rng.integers(len(candidates))]
        tint = np.clip(rng.normal(1.0, 0.12, 3), 0.6, 1.3)
        return {**spec, "kind": "image", "texture": texture["file"], "tile": float(rng.uniform(0.4, 2.0)),
                "tint": tint.round(4).tolist(), "rotate": bool(rng.random() < 0.5)}
    kind = PROCEDURAL_KINDS[role][rng.integers(len(PROCEDURAL_KINDS[role]))]
    colour2 = np.clip(colour * rng.uniform(0.5, 0.9, 3), 0.01, 1)
    spec.update(kind=kind, colour2=colour2.round(4).tolist())
    if kind == "paint" and rng.random() < 0.3:
        spec["roughness"] = float(rng.uniform(0.15, 0.35))  # gloss paint / lacquer
    return spec


def build_material(spec: dict, assets_root, name: str = "surface", normal_axis: int = 2):
    """The Cycles material of a spec: a Principled BSDF with box-projected (triplanar) textures in object space, so
    any mesh gets a texture at a metric scale without UVs. Planar patterns (bricks, tiles, windows) lie in the plane
    across ``normal_axis`` (0: a facade facing +-X, 1: facing +-Y, 2: a floor)."""
    import bpy

    material = bpy.data.materials.new(name)
    tree = material.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = spec["roughness"]
    coords = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    position = coords.outputs["Object"]  # metres: meshes are built at their size
    if normal_axis != 2 and spec["kind"] in PLANAR_KINDS:  # the pattern's (x, y) are the face's in-plane axes
        separate, combine = nodes.new("ShaderNodeSeparateXYZ"), nodes.new("ShaderNodeCombineXYZ")
        links.new(position, separate.inputs["Vector"])
        for target, source in zip("XYZ", ("YZX" if normal_axis == 0 else "XZY")):
            links.new(separate.outputs[source], combine.inputs[target])
        position = combine.outputs["Vector"]
    links.new(position, mapping.inputs["Vector"])
    kind = spec["kind"]
    if kind == "image":
        image = bpy.data.images.load(str(assets_root / spec["texture"]), check_existing=True)
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = image
        texture.projection = "BOX"
        texture.projection_blend = 0.2
        mapping.inputs["Scale"].default_value = (1 / spec["tile"],) * 3
        if spec.get("rotate"):
            mapping.inputs["Rotation"].default_value[2] = np.pi / 2
        links.new(mapping.outputs["Vector"], texture.inputs["Vector"])
        tint = nodes.new("ShaderNodeMix")
        tint.data_type = "RGBA"
        tint.blend_type = "MULTIPLY"
        tint.inputs["Factor"].default_value = 1.0
        links.new(texture.outputs["Color"], tint.inputs["A"])
        tint.inputs["B"].default_value = (*spec["tint"], 1)
        links.new(tint.outputs["Result"], bsdf.inputs["Base Color"])
    elif kind == "windows":
        windows = nodes.new("ShaderNodeTexBrick")
        windows.offset = 0.0
        mortar = max(spec["spacing"][0] - spec["window"][0], 0.6) / 2  # Blender's mortar is half a gap per side
        windows.inputs["Color1"].default_value = (*spec["glass"], 1)
        windows.inputs["Color2"].default_value = (*spec["glass"], 1)
        windows.inputs["Mortar"].default_value = (*spec["colour"], 1)
        windows.inputs["Scale"].default_value = 1.0
        windows.inputs["Brick Width"].default_value = spec["spacing"][0]
        windows.inputs["Row Height"].default_value = spec["window"][1] + 2 * mortar
        windows.inputs["Mortar Size"].default_value = mortar
        links.new(mapping.outputs["Vector"], windows.inputs["Vector"])
        links.new(windows.outputs["Color"], bsdf.inputs["Base Color"])
        glossy = nodes.new("ShaderNodeMapRange")  # glass panes are smooth, the wall (mortar, Fac 1) is not
        glossy.inputs["To Min"].default_value = 0.05
        glossy.inputs["To Max"].default_value = spec["roughness"]
        links.new(windows.outputs["Fac"], glossy.inputs["Value"])
        links.new(glossy.outputs["Result"], bsdf.inputs["Roughness"])
    else:
        links.new(_procedural_colour(nodes, links, spec, mapping), bsdf.inputs["Base Color"])
    if spec.get("metallic"):
        bsdf.inputs["Metallic"].default_value = spec["metallic"]
    if spec.get("transmission"):
        bsdf.inputs["Transmission Weight"].default_value = spec["transmission"]
    if spec.get("alpha") is not None:
        bsdf.inputs["Alpha"].default_value = spec["alpha"]
    if spec["bump"] > 0:
        noise = nodes.new("ShaderNodeTexNoise")
        noise.inputs["Scale"].default_value = 40.0 * spec["scale"]
        links.new(mapping.outputs["Vector"], noise.inputs["Vector"])
        bump = nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = spec["bump"]
        bump.inputs["Distance"].default_value = 0.002
        links.new(noise.outputs["Fac"], bump.inputs["Height"])
        links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    return material


def _procedural_colour(nodes, links, spec, mapping):
    colour, colour2, kind = (*spec["colour"], 1), (*spec["colour2"], 1), spec["kind"]
    if kind == "brick":
        brick = nodes.new("ShaderNodeTexBrick")
        brick.inputs["Color1"].default_value = colour
        brick.inputs["Color2"].default_value = colour2
        brick.inputs["Mortar"].default_value = (0.6, 0.58, 0.55, 1)
        brick.inputs["Scale"].default_value = 1.0
        brick.inputs["Brick Width"].default_value = 0.25
        brick.inputs["Row Height"].default_value = 0.075
        brick.inputs["Mortar Size"].default_value = 0.01
        links.new(mapping.outputs["Vector"], brick.inputs["Vector"])
        return brick.outputs["Color"]
    if kind == "tiles":
        tiles = nodes.new("ShaderNodeTexBrick")
        tiles.offset = 0.0
        tiles.inputs["Color1"].default_value = colour
        tiles.inputs["Color2"].default_value = colour2
        tiles.inputs["Mortar"].default_value = (0.3, 0.3, 0.3, 1)
        tiles.inputs["Scale"].default_value = 1.0
        side = 0.2 + 0.4 * (spec["scale"] / 3)
        tiles.inputs["Brick Width"].default_value = side
        tiles.inputs["Row Height"].default_value = side
        tiles.inputs["Mortar Size"].default_value = 0.004
        links.new(mapping.outputs["Vector"], tiles.inputs["Vector"])
        return tiles.outputs["Color"]
    noise = nodes.new("ShaderNodeTexNoise")  # plaster, asphalt, paint: albedo that varies a little
    noise.inputs["Scale"].default_value = {"asphalt": 60.0, "plaster": 8.0}.get(kind, 2.0) * spec["scale"]
    noise.inputs["Detail"].default_value = 8.0
    links.new(mapping.outputs["Vector"], noise.inputs["Vector"])
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = colour2 if kind != "paint" else tuple(0.92 * c for c in colour[:3]) + (1,)
    ramp.color_ramp.elements[1].color = colour
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    return ramp.outputs["Color"]
