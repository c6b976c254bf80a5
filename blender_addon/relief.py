"""Relief geometry from depth maps.

- Orthographic relief: a Geometry Nodes modifier on an empty mesh builds a grid, lifts it by the
  height image (near = high), cuts faces steeper than the edge angle (the "curtains" at depth
  discontinuities) and outside the matte, and stores the UV map. Its inputs (height, cut angle,
  matte threshold, resolution) stay editable in the modifier panel; ``bake`` turns it into a plain mesh.
- Perspective unprojection: a real mesh in camera space, X = (u - cx) / f * Z, Y = -(v - cy) / f * Z,
  with Z between the near and far distances; a camera with the same field of view sits at the origin.

Relief vertices span the image from edge to edge, vertex (i, j) at UV (j / (W - 1), 1 - i / (H - 1)), with the
maps resampled there; perspective vertices sit on pixel-centre rays. Photo, geometry and material line up.
"""

import math

import bpy
import numpy as np
from genpercept_bundle.conventions import near_bright

NODE_GROUP = "GenPercept Relief"


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


def grid_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """Vertices (rows, columns) with ``resolution`` along the longest side, same aspect as the map."""
    scale = resolution / max(height, width)
    return max(2, round(height * scale)), max(2, round(width * scale))


def _group_interface(tree):
    sockets = [
        ("Height", "NodeSocketFloat", 0.2, "Relief height (scene units) from the farthest to the nearest point"),
        ("Base", "NodeSocketFloat", 0.0, "Thickness of a solid base under the relief (0 = none)"),
        ("Edge Angle", "NodeSocketFloat", 80.0, "Faces steeper than this (degrees from flat) are cut: 90 keeps all"),
        ("Matte Threshold", "NodeSocketFloat", 0.0, "Faces where the matte is below this are cut (0 keeps all)"),
        ("Columns", "NodeSocketInt", 256, "Vertices along the width"),
        ("Rows", "NodeSocketInt", 256, "Vertices along the height"),
        ("Width", "NodeSocketFloat", 1.0, "Width in scene units"),
        ("Depth Height", "NodeSocketImage", None, "Height image (1 = nearest)"),
        ("Matte", "NodeSocketImage", None, "Matte image (1 = foreground)"),
        ("Material", "NodeSocketMaterial", None, "Material of the relief"),
    ]
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    for name, kind, default, description in sockets:
        socket = tree.interface.new_socket(name, in_out="INPUT", socket_type=kind)
        socket.description = description
        if default is not None:
            socket.default_value = default


class _Nodes:
    """Adds nodes to a node tree and links them: ``math`` and ``sample`` return output sockets."""

    def __init__(self, tree):
        self.new, self.link = tree.nodes.new, tree.links.new

    def math(self, operation, a, b):
        node = self.new("ShaderNodeMath")
        node.operation = operation
        for socket, value in zip(node.inputs, (a, b)):
            self.link(value, socket) if not isinstance(value, (int, float)) else setattr(socket, "default_value", value)
        return node.outputs[0]

    def sample(self, image_socket, vector):
        node = self.new("GeometryNodeImageTexture")
        node.interpolation, node.extension = "Closest", "EXTEND"  # images are resampled to one texel per vertex
        self.link(image_socket, node.inputs["Image"])
        self.link(vector, node.inputs["Vector"])
        return node.outputs["Color"]

    def xyz(self, **components):
        node = self.new("ShaderNodeCombineXYZ")
        for axis, socket in components.items():
            self.link(socket, node.inputs[axis])
        return node.outputs[0]


def relief_node_group() -> "bpy.types.GeometryNodeTree":
    """The node group (built once per file) behind every orthographic relief."""
    if NODE_GROUP in bpy.data.node_groups:
        return bpy.data.node_groups[NODE_GROUP]
    tree = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    _group_interface(tree)
    nodes = _Nodes(tree)
    group_in, group_out = nodes.new("NodeGroupInput").outputs, nodes.new("NodeGroupOutput")
    # Grid of Columns x Rows vertices, Width wide, with the image's aspect ratio.
    depth_side = nodes.math("MULTIPLY", group_in["Width"], nodes.math(
        "DIVIDE", nodes.math("SUBTRACT", group_in["Rows"], 1), nodes.math("SUBTRACT", group_in["Columns"], 1)))
    grid = nodes.new("GeometryNodeMeshGrid")
    for socket, value in (("Size X", group_in["Width"]), ("Size Y", depth_side), ("Vertices X", group_in["Columns"]),
                          ("Vertices Y", group_in["Rows"])):
        nodes.link(value, grid.inputs[socket])
    uv = grid.outputs["UV Map"]
    store_uv = nodes.new("GeometryNodeStoreNamedAttribute")
    store_uv.data_type, store_uv.domain = "FLOAT2", "CORNER"
    store_uv.inputs["Name"].default_value = "UVMap"
    nodes.link(grid.outputs["Mesh"], store_uv.inputs["Geometry"])
    nodes.link(uv, store_uv.inputs["Value"])
    # Lift by Height x height image (+ Base).
    lift = nodes.math("ADD", nodes.math("MULTIPLY", nodes.sample(group_in["Depth Height"], uv), group_in["Height"]),
                      group_in["Base"])
    set_position = nodes.new("GeometryNodeSetPosition")
    nodes.link(store_uv.outputs["Geometry"], set_position.inputs["Geometry"])
    nodes.link(nodes.xyz(Z=lift), set_position.inputs["Offset"])
    surface = _cut_and_finish(nodes, group_in, set_position.outputs[0], uv)
    join = nodes.new("GeometryNodeJoinGeometry")
    nodes.link(_base_block(nodes, group_in, depth_side), join.inputs[0])
    nodes.link(surface, join.inputs[0])
    nodes.link(join.outputs[0], group_out.inputs["Geometry"])
    return tree


def _cut_and_finish(nodes: _Nodes, group_in, geometry, uv):
    """Cut steep faces (normal z below cos(edge angle)) and faces outside the matte; shade smooth; the material."""
    normal_z = nodes.new("ShaderNodeSeparateXYZ")
    nodes.link(nodes.new("GeometryNodeInputNormal").outputs[0], normal_z.inputs[0])
    steep = nodes.math("LESS_THAN", normal_z.outputs["Z"],
                       nodes.math("COSINE", nodes.math("RADIANS", group_in["Edge Angle"], 0), 0))
    outside = nodes.math("LESS_THAN", nodes.sample(group_in["Matte"], uv), group_in["Matte Threshold"])
    delete = nodes.new("GeometryNodeDeleteGeometry")
    delete.domain = "FACE"
    nodes.link(geometry, delete.inputs["Geometry"])
    nodes.link(nodes.math("MAXIMUM", steep, outside), delete.inputs["Selection"])
    smooth = nodes.new("GeometryNodeSetShadeSmooth")
    nodes.link(delete.outputs[0], smooth.inputs["Geometry"])
    set_material = nodes.new("GeometryNodeSetMaterial")  # geometry made by nodes carries no material otherwise
    nodes.link(smooth.outputs[0], set_material.inputs["Geometry"])
    nodes.link(group_in["Material"], set_material.inputs["Material"])
    return set_material.outputs[0]


def _base_block(nodes: _Nodes, group_in, depth_side):
    """The optional solid base: a block Base thick under the relief (nothing when Base is 0)."""
    base = nodes.new("GeometryNodeMeshCube")
    nodes.link(nodes.xyz(X=group_in["Width"], Y=depth_side, Z=group_in["Base"]), base.inputs["Size"])
    lift_base = nodes.new("GeometryNodeTransform")
    nodes.link(base.outputs["Mesh"], lift_base.inputs["Geometry"])
    nodes.link(nodes.xyz(Z=nodes.math("MULTIPLY", group_in["Base"], 0.5)), lift_base.inputs["Translation"])
    has_base = nodes.new("GeometryNodeSwitch")
    has_base.input_type = "GEOMETRY"
    nodes.link(nodes.math("GREATER_THAN", group_in["Base"], 0.0), has_base.inputs["Switch"])
    nodes.link(lift_base.outputs[0], has_base.inputs["True"])
    return has_base.outputs[0]


def orthographic_relief(name, depth, matte=None, resolution=256, height=0.2, width=1.0, invert=False, base=0.0,
                        edge_angle=80.0, matte_threshold=0.0, material=None):
    """An object whose Geometry Nodes modifier is the relief; returns the object."""
    rows, columns = grid_size(*depth.shape, resolution)
    lifted = depth if invert else near_bright(depth)  # near = high
    height_image = float_image(f"{name} height", grid_samples(lifted, rows, columns))
    matte_values = grid_samples(matte, rows, columns) if matte is not None else np.ones((rows, columns), np.float32)
    matte_image = float_image(f"{name} matte", matte_values)
    obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
    modifier = obj.modifiers.new("GenPercept Relief", "NODES")
    modifier.node_group = relief_node_group()
    values = {"Height": height, "Base": base, "Edge Angle": edge_angle, "Matte Threshold": matte_threshold,
              "Columns": columns, "Rows": rows, "Width": width, "Depth Height": height_image, "Matte": matte_image,
              "Material": material}
    for item in modifier.node_group.interface.items_tree:
        if item.item_type == "SOCKET" and item.in_out == "INPUT":
            if values[item.name] is not None:
                modifier[item.identifier] = values[item.name]
    if material is not None:
        obj.data.materials.append(material)
    return obj


def grid_samples(image, rows, columns):
    """``image`` at the grid's vertices: vertex (i, j) sits at UV (j / (columns - 1), 1 - i / (rows - 1)), i.e.
    the grid spans the image from edge to edge, so the photo, the heights and the UVs line up."""
    h, w = image.shape
    ys = np.arange(rows) / (rows - 1) * h - 0.5
    xs = np.arange(columns) / (columns - 1) * w - 0.5
    return _bilinear(image.astype(np.float32), ys, xs).astype(np.float32)


def bake(obj) -> "bpy.types.Object":
    """Replace the relief modifier by the mesh it makes (for export, sculpting, CNC)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = bpy.data.meshes.new_from_object(obj.evaluated_get(depsgraph))
    old = obj.data
    obj.modifiers.clear()
    obj.data = mesh
    if old.users == 0:
        bpy.data.meshes.remove(old)
    return obj


def cell_centres(height, width, rows, columns):
    """Pixel coordinates (row, column arrays) of the centres of a rows x columns grid of cells over the image."""
    return (np.arange(rows) + 0.5) * height / rows - 0.5, (np.arange(columns) + 0.5) * width / columns - 0.5


def perspective_points(depth, fov_degrees, near, far, resolution, invert=False):
    """Camera-space vertices [rows, cols, 3] (camera at the origin looking down -Z) and the focal length in pixels."""
    rows, columns = grid_size(*depth.shape, resolution)
    h, w = depth.shape
    ys, xs = cell_centres(h, w, rows, columns)
    sampled = _bilinear(depth, ys, xs)
    relative = near_bright(sampled) if invert else sampled  # an inverted (near = bright) map back to depth
    distance = near + relative * (far - near)
    focal = 0.5 * w / math.tan(math.radians(fov_degrees) / 2)
    u = (xs + 0.5)[None, :] - w / 2
    v = (ys + 0.5)[:, None] - h / 2
    points = np.stack(np.broadcast_arrays(u / focal * distance, -v / focal * distance, -distance), axis=-1)
    return points.astype(np.float32), focal


def _bilinear(image, ys, xs):
    y0 = np.clip(np.floor(ys).astype(int), 0, image.shape[0] - 1)
    x0 = np.clip(np.floor(xs).astype(int), 0, image.shape[1] - 1)
    y1, x1 = np.minimum(y0 + 1, image.shape[0] - 1), np.minimum(x0 + 1, image.shape[1] - 1)
    fy = np.clip(ys - y0, 0, 1)[:, None]
    fx = np.clip(xs - x0, 0, 1)[None, :]
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


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
    """A mesh from a vertex grid [rows, cols, 3] and quads, with cell-centred UVs and smooth shading."""
    rows, columns = points.shape[:2]
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(rows * columns)
    mesh.vertices.foreach_set("co", points.reshape(-1))
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.reshape(-1).astype(np.int32))
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 4, dtype=np.int32))
    mesh.update(calc_edges=True)
    u = (np.arange(columns) + 0.5) / columns
    v = 1.0 - (np.arange(rows) + 0.5) / rows
    vertex_uv = np.stack(np.meshgrid(u, v), axis=-1).reshape(-1, 2).astype(np.float32)
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", vertex_uv[faces.reshape(-1)].reshape(-1))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), bool))
    return mesh


def perspective_relief(name, depth, matte=None, resolution=256, fov=60.0, near=2.0, far=10.0, invert=False,
                       relative_tolerance=0.04, matte_threshold=0.0):
    """(mesh object, camera object) aligned so the camera sees the mesh exactly as the photo."""
    points, focal = perspective_points(depth, fov, near, far, resolution, invert)
    matte_sampled = None if matte is None else _bilinear(matte, *cell_centres(*matte.shape, *points.shape[:2]))
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
