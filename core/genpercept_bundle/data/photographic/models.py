"""Catalogue models in Blender: imported from OBJ once per process, then copied, scaled and placed.

SweetHome3D scales every model to its catalogue size (width x depth x height, after the catalogue's optional
``modelRotation``); so do we, so sizes are metric whatever units the OBJ was made in.
"""

import numpy as np

_imported: dict[str, object] = {}  # OBJ file -> the imported mesh object, kept hidden and copied per placement


def clear_model_cache():
    _imported.clear()


def import_model(assets_root, asset: dict, location, yaw: float, size):
    """A copy of ``asset`` standing with its bottom centre at ``location``, turned by ``yaw``, ``size`` metres."""
    import bpy

    source = _imported.get(asset["file"])
    if source is None or source.name not in bpy.data.objects:
        source = _import_normalised(assets_root / asset["file"], asset.get("rotation"))
        _imported[asset["file"]] = source
    obj = source.copy()  # shares the mesh data: a second placement costs no memory
    bpy.context.scene.collection.objects.link(obj)
    obj.hide_render = False
    obj.scale = (float(size[0]), float(size[1]), float(size[2]))
    obj.location = tuple(float(v) for v in location)
    obj.rotation_euler = (0.0, 0.0, float(yaw))
    return obj


def _import_normalised(path, rotation):
    """The OBJ as one mesh object whose bounding box is the unit cube's [-0.5, 0.5]^2 x [0, 1] (bottom centre at the
    origin), so that its scale is its size in metres."""
    import bpy

    before = set(bpy.data.objects)
    bpy.ops.wm.obj_import(filepath=str(path), forward_axis="NEGATIVE_Z", up_axis="Y", validate_meshes=False)
    parts = [obj for obj in bpy.data.objects if obj not in before and obj.type == "MESH"]
    if len(parts) > 1:
        with bpy.context.temp_override(active_object=parts[0], selected_editable_objects=parts):
            bpy.ops.object.join()
    obj = parts[0]
    _detach_missing_textures(obj)
    mesh = obj.data
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", vertices)
    vertices = vertices.reshape(-1, 3) @ np.array(obj.matrix_world)[:3, :3].T
    if rotation is not None:  # the catalogue's row-major 3x3 in SweetHome3D's axes (y up): conjugate to Blender's
        to_blender = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
        vertices = vertices @ (to_blender @ np.reshape(rotation, (3, 3)) @ to_blender.T).T
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    extent = np.maximum(high - low, 1e-6)
    vertices = (vertices - np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])) / extent
    mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
    mesh.update()
    obj.matrix_world = np.eye(4).tolist()
    obj.hide_render = True
    if obj.name in bpy.context.scene.collection.objects:  # the source stays out of the scene; copies are placed
        bpy.context.scene.collection.objects.unlink(obj)
    return obj


def _detach_missing_textures(obj):
    """Some catalogue MTL files name textures by absolute paths of their author's machine: without this, Cycles
    paints those surfaces magenta; detached, they keep the MTL's diffuse colour."""
    import os

    import bpy

    for material in obj.data.materials:
        if material is None or material.node_tree is None:
            continue
        for node in material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and (node.image is None or not os.path.isfile(bpy.path.abspath(node.image.filepath))):
                for output in node.outputs:
                    for link in list(output.links):
                        material.node_tree.links.remove(link)
