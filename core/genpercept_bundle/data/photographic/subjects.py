"""Matting subjects: people with hair, furry animals, thin and semi-transparent objects, and where they stand.

A subject spec is plain data drawn from the seed (``random_subject``), placed in front of the layout's camera
(``place_subject``: portrait framing re-aims the camera at the head, as in portrait matting sets), and built in
Blender by ``build_subject``. Strands are real curves rendered by Cycles (Principled Hair BSDF), so their alpha is
exact coverage; they are grown in numpy from the seed:

- people (SweetHome3D's Reallusion, Kator Legaz and Scopia characters): a scalp cap of hair over the model's own
  head, long or short, with flyaway strands;
- animals (the catalogue's cats, dogs, rabbits, horses...): fur over the whole surface;
- objects: plants and thin furniture from the catalogue, a wire sphere (thin structures), or a semi-transparent
  glass vessel or veil (fractional alpha).
"""

import numpy as np

from .cameras import camera_basis

PERSON_MIN_HEIGHT = 1.2  # adults and children standing
ANIMAL_WORDS = ("cat", "dog", "rabbit", "horse", "bulldog", "chicken", "teddy")
OBJECT_WORDS = ("plant", "tree", "flower", "bonsai", "lamp", "bicycle", "bike", "chair", "clothes horse", "stroller",
                "tricycle", "scooter")
HAIR_COLOURS = [  # melanin, melanin redness of the Principled Hair BSDF
    (0.9, 0.2), (0.7, 0.3), (0.5, 0.5), (0.3, 0.6), (0.15, 0.3), (0.05, 0.1), (0.95, 0.05), (0.6, 0.9)]


def random_subject(rng: np.random.Generator, assets) -> dict:
    characters = assets.furniture_in("Characters")
    people = [c for c in characters if c["size"][2] >= PERSON_MIN_HEIGHT  # standing: hair goes on the highest part
              and not any(w in c["name"].lower() for w in ("sitting", "lying"))]
    animals = [c for c in assets.furniture if any(w in c["name"].lower() for w in ANIMAL_WORDS)
               and c["category"] in ("Characters", "Bedroom")]
    objects = [c for c in assets.furniture if any(w in c["name"].lower() for w in OBJECT_WORDS)
               and max(c["size"]) < 2.5]
    draw = rng.random()
    if draw < 0.6 and people:
        melanin, redness = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
        hair = {"count": int(rng.integers(1500, 5000)), "length": float(rng.choice([0.06, 0.15, 0.3, 0.45]) * rng.uniform(0.7, 1.3)),
                "curl": float(rng.uniform(0.0, 0.6)), "gravity": float(rng.uniform(0.3, 1.0)),
                "radius": float(rng.uniform(0.00025, 0.0006)), "flyaways": int(rng.integers(20, 400)),
                "melanin": melanin, "redness": redness, "roughness": float(rng.uniform(0.2, 0.45)),
                "seed": int(rng.integers(2**31))}
        subject = {"kind": "person", "asset": people[rng.integers(len(people))], "hair": hair}
    elif draw < 0.8 and animals:
        melanin, redness = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
        fur = {"density": float(rng.uniform(8000, 25000)), "length": float(rng.uniform(0.008, 0.04)),
               "curl": float(rng.uniform(0.0, 0.5)), "gravity": float(rng.uniform(0.1, 0.6)),
               "radius": float(rng.uniform(0.0002, 0.0005)), "melanin": melanin, "redness": redness,
               "roughness": float(rng.uniform(0.25, 0.5)), "seed": int(rng.integers(2**31)), "max_strands": 60000}
        subject = {"kind": "animal", "asset": animals[rng.integers(len(animals))], "fur": fur}
    else:
        procedural = rng.choice(["model", "wire", "glass", "veil"], p=[0.55, 0.15, 0.15, 0.15]) if objects else \
            rng.choice(["wire", "glass", "veil"])
        subject = {"kind": "object", "asset": objects[rng.integers(len(objects))] if procedural == "model" else None,
                   "shape": str(procedural), "size": float(rng.uniform(0.3, 1.0)),
                   "colour": np.clip(rng.uniform(0.05, 0.9, 3), 0, 1).round(3).tolist(),
                   "opacity": float(rng.uniform(0.15, 0.6)), "wire": float(rng.uniform(0.002, 0.01)),
                   "seed": int(rng.integers(2**31))}
    subject["portrait"] = bool(rng.random() < (0.6 if subject["kind"] == "person" else 0.4))
    return subject


def subject_height(subject: dict) -> float:
    return subject["asset"]["size"][2] if subject.get("asset") else subject["size"]


def place_subject(rng, layout):
    """Stand the subject in front of the camera on the floor (z = 0) and, for portraits, aim the camera at its head
    from close by; objects without a floor (backdrop) stand at the camera's feet level."""
    subject, camera = layout.subject, layout.camera
    height = subject_height(subject)
    backdrop = layout.kind == "backdrop"
    portrait = subject["portrait"] or backdrop
    forward = camera_basis(camera)[2] * -1
    flat = np.array([forward[0], forward[1], 0.0])
    flat /= max(np.linalg.norm(flat), 1e-6)
    side = np.array([flat[1], -flat[0], 0.0])
    fov = np.radians(camera.fov)
    aspect = 0.75
    vertical_half = np.arctan(np.tan(fov / 2) * aspect)
    if portrait:
        extent = height * rng.uniform(0.3, 0.7) if subject["kind"] == "person" else height * rng.uniform(0.7, 1.4)
        distance = extent / 2 / np.tan(vertical_half)
        look_z = height - extent * rng.uniform(0.3, 0.5)
    else:
        distance = rng.uniform(1.6, 4.5) if height > 1 else rng.uniform(0.9, 2.5)
        look_z = height * rng.uniform(0.35, 0.6)
    eye = np.asarray(camera.location, float)
    ground = eye[2] - look_z if backdrop else 0.0  # a backdrop has nothing to stand on: eye level decides
    lateral = rng.uniform(-0.3, 0.3) * distance * np.tan(fov / 2)
    foot = eye + flat * distance + side * lateral
    foot[2] = ground
    subject["location"] = foot.round(4).tolist()
    subject["yaw"] = float(np.arctan2(-flat[0], flat[1]) + rng.normal(0, 0.5))  # front (-Y) toward the camera, roughly
    aim = foot + np.array([0.0, 0.0, look_z])
    if portrait:
        camera.location = tuple(float(v) for v in (eye[0], eye[1], ground + look_z + rng.uniform(-0.1, 0.15)))
    camera.target = tuple(float(v) for v in aim)


# ---------------------------------------------------------------- Blender


def build_subject(subject: dict, assets_root):
    """The subject's objects in the current Blender scene (a list of bpy objects)."""
    import bpy

    from .models import import_model

    kind = subject["kind"]
    location, yaw = subject["location"], subject["yaw"]
    if subject.get("asset"):
        model = import_model(assets_root, subject["asset"], location, yaw, subject["asset"]["size"])
        bpy.context.view_layer.update()  # the model's matrix_world, which hair and fur are grown from
        objects = [model]
        if kind == "person":
            objects.append(_head_hair(model, subject["hair"]))
        elif kind == "animal":
            objects.append(_fur(model, subject["fur"]))
        return objects
    return [_procedural_object(subject, location, yaw)]


def _mesh_arrays(obj):
    """World-space vertices [V,3] and triangles [T,3] of a mesh object."""
    mesh = obj.data
    mesh.calc_loop_triangles()
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", vertices)
    vertices = vertices.reshape(-1, 3)
    matrix = np.array(obj.matrix_world)
    vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
    triangles = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", triangles)
    return vertices, triangles.reshape(-1, 3)


def _head_hair(model, hair: dict):
    """Hair curves over the top of the model's head: roots on an ellipsoid cap fitted to the highest vertices."""
    rng = np.random.default_rng(hair["seed"])
    vertices, _ = _mesh_arrays(model)
    top = vertices[:, 2].max()
    head = vertices[vertices[:, 2] > top - 0.2]
    centre = np.array([*np.median(head[:, :2], axis=0), top - 0.11])
    radii = np.array([max(np.ptp(head[:, 0]) / 2, 0.07), max(np.ptp(head[:, 1]) / 2, 0.08), 0.11]) * 0.9
    radii[:2] = np.minimum(radii[:2], 0.11)
    directions = rng.normal(size=(hair["count"] + hair["flyaways"], 3))
    directions[:, 2] = np.abs(directions[:, 2]) + 0.15  # the upper cap (and a fringe round the back and sides)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    front = -np.array(model.matrix_world)[:3, 1]  # catalogue models face -Y
    front /= np.linalg.norm(front)
    face = directions @ front > 0.2
    directions = directions[~face | (directions[:, 2] > 0.55)]  # no roots on the face, a fringe above it
    face = directions @ front > 0.2
    roots = centre + directions * radii
    lengths = hair["length"] * rng.uniform(0.6, 1.2, len(roots))
    lengths[face] = np.minimum(lengths[face], rng.uniform(0.03, 0.08, face.sum()))
    gravity = np.full(len(roots), hair["gravity"])
    flyaways = np.arange(len(roots)) >= len(roots) - hair["flyaways"]  # the last roots: longer, wilder strands
    lengths[flyaways] *= rng.uniform(1.1, 1.8, flyaways.sum())
    gravity[flyaways] *= 0.3
    lying = directions * 0.4 + np.array([0.0, 0.0, -0.3])  # hair leaves the scalp at a low angle, then falls
    curl = np.where(flyaways, 0.8, hair["curl"])[:, None]
    strands = _grow(rng, roots, lying / np.linalg.norm(lying, axis=1, keepdims=True), lengths, gravity, curl,
                    segments=8, collider=(centre, radii * 1.03))
    radius = np.where(flyaways, hair["radius"] * 0.5, hair["radius"])
    return _curves_object("hair", strands, radius, _hair_material(hair))


def _fur(model, fur: dict):
    """Short strands over the whole surface, area-weighted roots along the face normals."""
    rng = np.random.default_rng(fur["seed"])
    vertices, triangles = _mesh_arrays(model)
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    areas = np.linalg.norm(normals, axis=1) / 2
    count = int(min(fur["max_strands"], fur["density"] * areas.sum()))
    picked = rng.choice(len(triangles), size=max(count, 1), p=areas / areas.sum())
    u, v = rng.random((2, len(picked)))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    roots = a[picked] + u[:, None] * (b - a)[picked] + v[:, None] * (c - a)[picked]
    directions = normals[picked] / np.maximum(np.linalg.norm(normals[picked], axis=1, keepdims=True), 1e-9)
    lengths = fur["length"] * rng.uniform(0.5, 1.3, len(roots))
    strands = _grow(rng, roots, directions, lengths, np.full(len(roots), fur["gravity"]), fur["curl"], segments=4)
    return _curves_object("fur", strands, np.full(len(roots), fur["radius"]), _hair_material(fur))


def _grow(rng, roots, directions, lengths, gravity, curl, segments: int, collider=None) -> np.ndarray:
    """Strands [N, segments + 1, 3]: from each root along its direction, bent by gravity and random curl; with a
    ``collider`` (centre, radii of an ellipsoid) points are kept outside it (hair lying on the head)."""
    points = [roots]
    heading = directions.copy()
    step = (lengths / segments)[:, None]
    for _ in range(segments):
        heading = heading + gravity[:, None] * np.array([0.0, 0.0, -0.8]) + curl * rng.normal(size=heading.shape) * 0.25
        heading /= np.linalg.norm(heading, axis=1, keepdims=True)
        point = points[-1] + heading * step
        if collider is not None:
            centre, radii = collider
            scaled = (point - centre) / radii
            norm = np.linalg.norm(scaled, axis=1, keepdims=True)
            point = np.where(norm < 1.0, centre + scaled / np.maximum(norm, 1e-6) * radii, point)
        points.append(point)
    return np.stack(points, axis=1)


def _curves_object(name: str, strands: np.ndarray, radius: np.ndarray, material):
    import bpy

    count, length, _ = strands.shape
    curves = bpy.data.hair_curves.new(name)
    curves.add_curves([length] * count)
    curves.attributes["position"].data.foreach_set("vector", strands.astype(np.float32).ravel())
    tapered = radius[:, None] * np.linspace(1.0, 0.3, length)[None, :]
    radius_attribute = curves.attributes.new("radius", "FLOAT", "POINT")
    radius_attribute.data.foreach_set("value", tapered.astype(np.float32).ravel())
    curves.materials.append(material)
    obj = bpy.data.objects.new(name, curves)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _hair_material(spec: dict):
    import bpy

    material = bpy.data.materials.new("hair")
    nodes, links = material.node_tree.nodes, material.node_tree.links
    for node in list(nodes):
        nodes.remove(node)
    hair = nodes.new("ShaderNodeBsdfHairPrincipled")
    hair.parametrization = "MELANIN"
    hair.inputs["Melanin"].default_value = spec["melanin"]
    hair.inputs["Melanin Redness"].default_value = spec["redness"]
    hair.inputs["Roughness"].default_value = spec["roughness"]
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(hair.outputs[0], output.inputs["Surface"])
    return material


def _procedural_object(subject: dict, location, yaw):
    """A wire sphere (thin structures), a glass vessel or a veil (semi-transparent), or an opaque ball, of
    ``subject['size']`` (metres), standing on ``location``."""
    import bmesh
    import bpy

    size, shape = subject["size"], subject["shape"]
    mesh = bpy.data.meshes.new(shape)
    geometry = bmesh.new()
    if shape == "ball":
        bmesh.ops.create_uvsphere(geometry, u_segments=48, v_segments=24, radius=size / 2)
    elif shape == "wire":
        bmesh.ops.create_icosphere(geometry, subdivisions=2, radius=size / 2)
    elif shape == "glass":
        bmesh.ops.create_cone(geometry, cap_ends=False, segments=32, radius1=size * 0.18, radius2=size * 0.28,
                              depth=size)
        bmesh.ops.translate(geometry, vec=(0, 0, size / 2), verts=geometry.verts)
    else:  # a veil: a wavy sheet
        bmesh.ops.create_grid(geometry, x_segments=40, y_segments=40, size=size / 2)
        bmesh.ops.rotate(geometry, verts=geometry.verts, cent=(0, 0, 0), matrix=_x_rotation(np.pi / 2))
        rng = np.random.default_rng(subject["seed"])
        phase = rng.uniform(0, 2 * np.pi, 2)
        for vertex in geometry.verts:
            x, _, z = vertex.co
            vertex.co.y += 0.05 * size * (np.sin(12 * x / size + phase[0]) + np.sin(9 * z / size + phase[1]))
    geometry.to_mesh(mesh)
    geometry.free()
    if shape == "ball":
        mesh.shade_smooth()
    obj = bpy.data.objects.new(shape, mesh)
    bpy.context.scene.collection.objects.link(obj)
    lift = size / 2 if shape != "glass" else 0.0
    obj.location = (location[0], location[1], location[2] + lift + (0.6 if shape == "veil" else 0.0))
    obj.rotation_euler = (0, 0, yaw)
    if shape == "wire":
        modifier = obj.modifiers.new("wire", "WIREFRAME")
        modifier.thickness = subject["wire"]
    if shape == "glass":
        modifier = obj.modifiers.new("wall", "SOLIDIFY")
        modifier.thickness = 0.004
    material = bpy.data.materials.new(shape)
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*subject["colour"], 1)
    if shape in ("glass", "veil"):
        bsdf.inputs["Alpha"].default_value = subject["opacity"]  # what the film's alpha sees through
        bsdf.inputs["Roughness"].default_value = 0.05 if shape == "glass" else 0.7
    else:
        bsdf.inputs["Metallic"].default_value = 0.8
        bsdf.inputs["Roughness"].default_value = 0.3
    mesh.materials.append(material)
    return obj


def _x_rotation(angle):
    from mathutils import Matrix

    return Matrix.Rotation(angle, 3, "X")
