"""Relief geometry from height fields and depth maps.

- Orthographic relief: a Geometry Nodes modifier on an empty mesh builds a grid with one vertex per texel of
  the height image (heights come from ``genpercept_bundle.relief_heights``), lifts it (near = high), and
  either cuts faces steeper than the edge angle and outside the matte (an open sheet), or closes it into a
  solid: side walls down to a flat base, one watertight piece for printing and milling. Its inputs (height,
  base, width, cut angle, matte threshold, solid) stay editable in the modifier panel; ``bake`` makes a plain mesh.
  A moving relief's height image is an image sequence, and its Frame input (driven by the scene's frame) picks
  the frame's heights.
- Perspective unprojection: a real mesh in camera space, X = (u - cx) / f * Z, Y = -(v - cy) / f * Z,
  with Z between the near and far distances; a camera with the same field of view sits at the origin.

Relief vertex (i, j) sits at UV (j / (W - 1), 1 - i / (H - 1)) and samples texel (i, j) of the height image
exactly (the heights are resampled from the full-resolution depth to the grid in numpy); perspective vertices
sit on pixel-centre rays. Photo, geometry and material line up.
"""

import math

import bpy
import numpy as np
from genpercept_bundle.conventions import near_bright
from genpercept_bundle.relief_heights import grid_shape, resample

NODE_GROUP = "GenPercept Relief"
NODE_GROUP_VERSION = 5  # bumped when the group's sockets or nodes change: older files get a new group
MODIFIER = "GenPercept Relief"
FRAMES_PROPERTY = "GenPercept frames"  # on a moving relief: how many frames its height image sequence has
FAR_BELOW = 1e6  # relief units: where the walls are extruded to before their feet are set onto z = 0
SEAM = 1e-4  # relief units: how close the base's outline and the walls' feet must be to be welded


def float_image(name: str, values: np.ndarray, colorspace: str = "Non-Color") -> "bpy.types.Image":
    """A packed float image from [H,W] or [H,W,3] values (row 0 = top)."""
    height, width = values.shape[:2]
    image = bpy.data.images.new(name, width, height, float_buffer=True, alpha=False)
    image.colorspace_settings.name = colorspace  # before the pixels: changing it regenerates the image
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = values[..., None] if values.ndim == 2 else values
    image.pixels.foreach_set(rgba[::-1].ravel())
    image.pack()
    return image


_SOCKETS = [
    ("Height", "NodeSocketFloat", 0.2, "Relief height (scene units) from the farthest to the nearest point"),
    ("Base", "NodeSocketFloat", 0.0, "Solid: thickness of the flat base under the lowest point of the relief"),
    ("Width", "NodeSocketFloat", 1.0, "Width in scene units"),
    ("Solid", "NodeSocketBool", False, "Close the relief into one watertight solid: side walls down to a flat base "
                                       "(no cuts; outside the matte the relief drops to the base)"),
    ("Edge Angle", "NodeSocketFloat", 80.0, "Sheet: faces steeper than this (degrees from flat) are cut; 90 keeps all"),
    ("Matte Threshold", "NodeSocketFloat", 0.0, "Faces where the matte is below this are cut (0 keeps all)"),
    ("Heights", "NodeSocketImage", None, "Height image, one texel per vertex (1 = nearest)"),
    ("Frame", "NodeSocketInt", 1, "The frame of an image-sequence height image (a moving relief's: driven by the "
                                  "scene frame); a still image has one"),
    ("Matte", "NodeSocketImage", None, "Matte image of the same size (1 = foreground)"),
    ("Material", "NodeSocketMaterial", None, "Material of the relief"),
]


def _group_interface(tree):
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    for name, kind, default, description in _SOCKETS:
        socket = tree.interface.new_socket(name, in_out="INPUT", socket_type=kind)
        socket.description = description
        if default is not None:
            socket.default_value = default


class _Nodes:
    """Adds nodes to a node tree and links them: ``math``, ``compare`` and ``sample`` return output sockets."""

    def __init__(self, tree):
        self.new, self.link = tree.nodes.new, tree.links.new

    def math(self, operation, a, b=0.0):
        node = self.new("ShaderNodeMath")
        node.operation = operation
        for socket, value in zip(node.inputs, (a, b)):
            self.set(socket, value)
        return node.outputs[0]

    def set(self, socket, value):
        if isinstance(value, (int, float, bool, tuple, str)):
            socket.default_value = value
        else:
            self.link(value, socket)

    def sample(self, image_socket, vector, frame):
        node = self.new("GeometryNodeImageTexture")
        node.interpolation, node.extension = "Closest", "EXTEND"  # one texel per vertex, sampled at its centre
        self.link(image_socket, node.inputs["Image"])
        self.link(vector, node.inputs["Vector"])
        self.link(frame, node.inputs["Frame"])
        return node.outputs["Color"]

    def image_info(self, image_socket, frame):
        node = self.new("GeometryNodeImageInfo")
        self.link(image_socket, node.inputs["Image"])
        self.link(frame, node.inputs["Frame"])
        return node.outputs

    def xyz(self, **components):
        node = self.new("ShaderNodeCombineXYZ")
        for axis, value in components.items():
            self.set(node.inputs[axis], value)
        return node.outputs[0]

    def separate(self, vector):
        node = self.new("ShaderNodeSeparateXYZ")
        self.link(vector, node.inputs[0])
        return node.outputs

    def node(self, kind, inputs=None):
        node = self.new(kind)
        for name, value in (inputs or {}).items():
            self.set(node.inputs[name], value)
        return node


def _choose(node, name: str, value: tuple[str, str]):
    """Set a node's option, ``value`` = (enum identifier, menu label): a property up to Blender 4.x, a menu socket
    from 5.0."""
    if hasattr(node, name.lower()):
        setattr(node, name.lower(), value[0])
    else:
        node.inputs[name].default_value = value[1]


def relief_node_group() -> "bpy.types.GeometryNodeTree":
    """The node group (built once per file) behind every orthographic relief."""
    tree = bpy.data.node_groups.get(NODE_GROUP)
    if tree is not None and tree.get("genpercept_version") == NODE_GROUP_VERSION:
        return tree
    tree = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    tree["genpercept_version"] = NODE_GROUP_VERSION
    _group_interface(tree)
    nodes = _Nodes(tree)
    group_in, group_out = nodes.new("NodeGroupInput").outputs, nodes.new("NodeGroupOutput")
    # A grid of one vertex per height texel, Width wide, the image's aspect.
    size = nodes.image_info(group_in["Heights"], group_in["Frame"])
    columns, rows = size["Width"], size["Height"]
    depth_side = nodes.math("MULTIPLY", group_in["Width"],
                            nodes.math("DIVIDE", nodes.math("SUBTRACT", rows, 1), nodes.math("SUBTRACT", columns, 1)))
    grid = nodes.node("GeometryNodeMeshGrid", {"Size X": group_in["Width"], "Size Y": depth_side,
                                               "Vertices X": columns, "Vertices Y": rows})
    store_uv = nodes.node("GeometryNodeStoreNamedAttribute", {"Name": "UVMap", "Geometry": grid.outputs["Mesh"],
                                                              "Value": grid.outputs["UV Map"]})
    store_uv.data_type, store_uv.domain = "FLOAT2", "CORNER"
    texel = _texel_at_position(nodes, group_in["Width"], depth_side, columns, rows)
    height = nodes.math("MULTIPLY", nodes.sample(group_in["Heights"], texel, group_in["Frame"]), group_in["Height"])
    matte = _matte_or_one(nodes, group_in["Matte"], texel, group_in["Frame"])
    sheet = _sheet(nodes, group_in, store_uv.outputs[0], height, matte)
    solid = _solid(nodes, group_in, store_uv.outputs[0], height, matte)
    choose = nodes.node("GeometryNodeSwitch", {"Switch": group_in["Solid"], "False": sheet, "True": solid})
    choose.input_type = "GEOMETRY"
    smooth = nodes.node("GeometryNodeSetShadeSmooth", {"Geometry": choose.outputs[0]})
    set_material = nodes.node("GeometryNodeSetMaterial", {"Geometry": smooth.outputs[0],  # nodes' geometry has none
                                                          "Material": group_in["Material"]})
    nodes.link(set_material.outputs[0], group_out.inputs["Geometry"])
    return tree


def _texel_at_position(nodes: _Nodes, width, depth_side, columns, rows):
    """The height image coordinates of the texel centre under a vertex: grid column j of C at u = (j + 0.5) / C."""
    x, y, _ = nodes.separate(nodes.new("GeometryNodeInputPosition").outputs[0])

    def texel(coordinate, extent, count):
        grid_fraction = nodes.math("ADD", nodes.math("DIVIDE", coordinate, extent), 0.5)  # 0 .. 1 across the grid
        index = nodes.math("MULTIPLY", grid_fraction, nodes.math("SUBTRACT", count, 1))
        return nodes.math("DIVIDE", nodes.math("ADD", index, 0.5), count)

    return nodes.xyz(X=texel(x, width, columns), Y=texel(y, depth_side, rows))


def _matte_or_one(nodes: _Nodes, image, texel, frame):
    """The matte under a vertex; 1 (keep everything) when the relief has no matte image."""
    has_matte = nodes.math("GREATER_THAN", nodes.image_info(image, frame)["Width"], 0.5)
    return nodes.math("ADD", nodes.math("MULTIPLY", nodes.sample(image, texel, frame), has_matte),
                      nodes.math("SUBTRACT", 1.0, has_matte))


def _sheet(nodes: _Nodes, group_in, grid, height, matte):
    """The open relief: the grid lifted by the heights, minus steep faces and faces outside the matte (with their
    vertices and edges: nothing loose remains)."""
    lift = nodes.node("GeometryNodeSetPosition", {"Geometry": grid, "Offset": nodes.xyz(Z=height)})
    normal_z = nodes.separate(nodes.new("GeometryNodeInputNormal").outputs[0])["Z"]
    steep = nodes.math("LESS_THAN", normal_z, nodes.math("COSINE", nodes.math("RADIANS", group_in["Edge Angle"])))
    outside = nodes.math("LESS_THAN", matte, group_in["Matte Threshold"])
    delete = nodes.node("GeometryNodeDeleteGeometry", {"Geometry": lift.outputs[0],
                                                       "Selection": nodes.math("MAXIMUM", steep, outside)})
    delete.domain, delete.mode = "FACE", "ALL"
    return delete.outputs[0]


def _solid(nodes: _Nodes, group_in, grid, height, matte):
    """One closed piece: the grid lifted onto the base (outside the matte it stays at the base), its outline
    extruded straight down to z = 0 as walls, and their feet welded to a flat bottom face filled from their
    outline. Only the outline is extruded, so a solid costs little more than a sheet."""
    inside = nodes.math("GREATER_THAN", matte, nodes.math("SUBTRACT", group_in["Matte Threshold"], 1e-6))
    base = nodes.math("MAXIMUM", group_in["Base"], 4 * SEAM)  # the top never reaches the bottom it would weld to
    top = nodes.node("GeometryNodeSetPosition", {"Geometry": grid, "Offset": nodes.xyz(
        Z=nodes.math("ADD", base, nodes.math("MULTIPLY", height, inside)))})
    neighbours = nodes.new("GeometryNodeInputMeshEdgeNeighbors")
    outline = nodes.math("LESS_THAN", neighbours.outputs["Face Count"], 1.5)  # edges of one face: the grid's outline
    # Extruded far down, then set onto z = 0 (the extrusion's offset is not per vertex, so it cannot land there)
    walls = nodes.node("GeometryNodeExtrudeMesh", {"Mesh": top.outputs[0], "Selection": outline,
                                                   "Offset": nodes.xyz(Z=-1.0), "Offset Scale": FAR_BELOW})
    walls.mode = "EDGES"
    position = nodes.separate(nodes.new("GeometryNodeInputPosition").outputs[0])
    feet = nodes.node("GeometryNodeSetPosition", {
        "Geometry": walls.outputs["Mesh"], "Selection": nodes.math("LESS_THAN", position["Z"], -FAR_BELOW / 2),
        "Position": nodes.xyz(X=position["X"], Y=position["Y"], Z=0.0)})
    bottom_outline = nodes.node("GeometryNodeMeshToCurve", {"Mesh": feet.outputs[0],
                                                            "Selection": walls.outputs["Top"]})  # the walls' feet
    bottom = nodes.node("GeometryNodeFillCurve", {"Curve": bottom_outline.outputs[0]})
    _choose(bottom, "Mode", ("NGONS", "N-gons"))
    flip = nodes.node("GeometryNodeFlipFaces", {"Mesh": bottom.outputs[0]})  # facing down, out of the solid
    join = nodes.node("GeometryNodeJoinGeometry")
    nodes.link(flip.outputs[0], join.inputs[0])
    nodes.link(feet.outputs[0], join.inputs[0])
    weld = nodes.node("GeometryNodeMergeByDistance", {"Geometry": join.outputs[0], "Distance": SEAM,
                                                      "Selection": nodes.math("LESS_THAN", position["Z"], SEAM)})
    return weld.outputs[0]


def orthographic_relief(name, heights, matte=None, height=0.2, width=1.0, base=0.0, solid=False, edge_angle=80.0,
                        matte_threshold=0.0, material=None):
    """An object whose Geometry Nodes modifier is the relief of ``heights`` ([rows, columns] in [0, 1], 1 = nearest:
    ``genpercept_bundle.relief_heights``); ``matte`` at the same grid (or None). Returns the object."""
    matte_image = float_image(f"{name} matte", matte) if matte is not None else None
    return relief_object(name, float_image(f"{name} heights", heights), matte_image, height, width, base, solid,
                         edge_angle, matte_threshold, material)


def relief_object(name, height_image, matte_image=None, height=0.2, width=1.0, base=0.0, solid=False,
                  edge_angle=80.0, matte_threshold=0.0, material=None):
    """``orthographic_relief`` of a height image (a still image, or a moving relief's image sequence)."""
    obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
    modifier = obj.modifiers.new(MODIFIER, "NODES")
    modifier.node_group = relief_node_group()
    set_inputs(modifier, {"Height": height, "Base": base, "Width": width, "Solid": solid, "Edge Angle": edge_angle,
                          "Matte Threshold": matte_threshold, "Heights": height_image, "Matte": matte_image,
                          "Material": material})
    if material is not None:
        obj.data.materials.append(material)
    return obj


def relief_modifier(obj):
    """The object's relief modifier, or None."""
    modifier = obj.modifiers.get(MODIFIER) if obj is not None else None
    return modifier if modifier is not None and modifier.type == "NODES" else None


def set_inputs(modifier, values: dict):
    """Set the relief modifier's inputs by name (None leaves one as it is)."""
    for item in modifier.node_group.interface.items_tree:
        if item.item_type == "SOCKET" and item.in_out == "INPUT" and values.get(item.name) is not None:
            modifier[item.identifier] = values[item.name]


def modifier_input(modifier, name):
    item = next(i for i in modifier.node_group.interface.items_tree if getattr(i, "name", "") == name)
    return modifier[item.identifier]


def bake(obj) -> "bpy.types.Object":
    """Replace the relief modifier by the mesh it makes (for export, sculpting, CNC); a moving relief keeps the
    shape of the current frame."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph))
    old = obj.data
    for driver in list(obj.animation_data.drivers if obj.animation_data else []):
        if driver.data_path.startswith("modifiers["):  # a moving relief's frame driver goes with its modifier
            obj.animation_data.drivers.remove(driver)
    obj.pop(FRAMES_PROPERTY, None)
    obj.modifiers.clear()
    obj.data = mesh
    if old.users == 0:
        bpy.data.meshes.remove(old)
    return obj


def evaluated_face_count(obj) -> int:
    """Faces of the object as shown (its modifiers applied)."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    return len(evaluated.data.polygons)


# ---------------------------------------------------------------- perspective unprojection


def cell_centres(height, width, rows, columns):
    """Pixel coordinates (row, column arrays) of the centres of a rows x columns grid of cells over the image."""
    return (np.arange(rows) + 0.5) * height / rows - 0.5, (np.arange(columns) + 0.5) * width / columns - 0.5


def perspective_points(depth, fov_degrees, near, far, resolution, invert=False):
    """Camera-space vertices [rows, cols, 3] (camera at the origin looking down -Z) and the focal length in pixels;
    the depth is averaged over each vertex's cell of the full-resolution map."""
    rows, columns = grid_shape(*depth.shape, resolution)
    h, w = depth.shape
    ys, xs = cell_centres(h, w, rows, columns)
    sampled = resample(depth, rows, columns)
    relative = near_bright(sampled) if invert else sampled  # an inverted (near = bright) map back to depth
    distance = near + relative * (far - near)
    focal = 0.5 * w / math.tan(math.radians(fov_degrees) / 2)
    u = (xs + 0.5)[None, :] - w / 2
    v = (ys + 0.5)[:, None] - h / 2
    points = np.stack(np.broadcast_arrays(u / focal * distance, -v / focal * distance, -distance), axis=-1)
    return points.astype(np.float32), focal


def grid_faces(rows, columns, keep=None):
    """Quads [F,4] (counter-clockwise seen from +Z / the camera) of a rows x columns vertex grid."""
    index = np.arange(rows * columns).reshape(rows, columns)
    quads = np.stack([index[1:, :-1], index[1:, 1:], index[:-1, 1:], index[:-1, :-1]], axis=-1).reshape(-1, 4)
    return quads if keep is None else quads[keep.reshape(-1)]


def perspective_keep(points, matte_sampled=None, relative_tolerance=0.04, matte_threshold=0.0):
    """Faces to keep: depth span within ``relative_tolerance`` x nearest corner, and inside the matte."""
    z = -points[..., 2]
    corners = np.stack([z[1:, :-1], z[1:, 1:], z[:-1, 1:], z[:-1, :-1]])
    keep = (corners.max(0) - corners.min(0)) <= relative_tolerance * corners.min(0) if relative_tolerance > 0 else \
        np.ones(corners.shape[1:], bool)
    if matte_sampled is not None and matte_threshold > 0:
        m = matte_sampled
        keep &= np.stack([m[1:, :-1], m[1:, 1:], m[:-1, 1:], m[:-1, :-1]]).min(0) >= matte_threshold
    return keep


def mesh_from_grid(name, points, faces):
    """A mesh of the grid's vertices [rows, cols, 3] that the quads use (no loose vertices), with cell-centred UVs
    and smooth shading."""
    rows, columns = points.shape[:2]
    u = (np.arange(columns) + 0.5) / columns
    v = 1.0 - (np.arange(rows) + 0.5) / rows
    vertex_uv = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 2).astype(np.float32)
    used = np.unique(faces)
    renumber = np.zeros(rows * columns, np.int32)
    renumber[used] = np.arange(len(used), dtype=np.int32)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(used))
    mesh.vertices.foreach_set("co", points.reshape(-1, 3)[used].ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", renumber[faces.reshape(-1)])
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 4, dtype=np.int32))
    mesh.update(calc_edges=True)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", vertex_uv[faces.reshape(-1)].reshape(-1))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    return mesh


def perspective_relief(name, depth, matte=None, resolution=256, fov=60.0, near=2.0, far=10.0, invert=False,
                       relative_tolerance=0.04, matte_threshold=0.0):
    """(mesh object, camera object) aligned so the camera sees the mesh exactly as the photo."""
    points, focal = perspective_points(depth, fov, near, far, resolution, invert)
    matte_sampled = None if matte is None else resample(matte, *points.shape[:2])
    keep = perspective_keep(points, matte_sampled, relative_tolerance, matte_threshold)
    obj = bpy.data.objects.new(name, mesh_from_grid(name, points, grid_faces(*points.shape[:2], keep)))
    camera = bpy.data.objects.new(f"{name} camera", bpy.data.cameras.new(f"{name} camera"))
    camera.data.sensor_fit = "HORIZONTAL"
    camera.data.sensor_width = 36.0
    camera.data.lens = focal * 36.0 / depth.shape[1]
    # Camera space is the photo's (looking down -Z, +Y up); turn both upright so the view runs along +Y.
    for item in (obj, camera):
        item.rotation_euler = (math.pi / 2, 0.0, 0.0)
    return obj, camera
