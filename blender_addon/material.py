"""The relief material: photo as base colour, predicted normals in object space, matte as alpha."""

import bpy
from genpercept_bundle.conventions import normals_to_rgb

from .relief import float_image


def relief_material(name, photo_path=None, normals=None, matte=None):
    """A Principled BSDF material; each map is optional.

    Normals are camera-space unit vectors (+X right, +Y up, +Z toward the viewer). The relief's object space
    is that camera space (orthographic: the relief faces +Z; perspective: the mesh is built in camera space),
    so they go through a Normal Map node in OBJECT space, not tangent space, which would bend them a second
    time on the displaced surface.
    """
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender < 5 creates the node tree on request
        material.use_nodes = True
    nodes, link = material.node_tree.nodes, material.node_tree.links.new
    shader = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = "UVMap"
    if photo_path:
        photo = nodes.new("ShaderNodeTexImage")
        photo.image = bpy.data.images.load(bpy.path.abspath(photo_path), check_existing=True)
        photo.image.colorspace_settings.name = "sRGB"
        link(uv.outputs["UV"], photo.inputs["Vector"])
        link(photo.outputs["Color"], shader.inputs["Base Color"])
    if normals is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = float_image(f"{name} normals", normals_to_rgb(normals))
        normal_map = nodes.new("ShaderNodeNormalMap")
        normal_map.space = "OBJECT"
        link(uv.outputs["UV"], texture.inputs["Vector"])
        link(texture.outputs["Color"], normal_map.inputs["Color"])
        link(normal_map.outputs["Normal"], shader.inputs["Normal"])
    if matte is not None:
        texture = nodes.new("ShaderNodeTexImage")
        texture.image = float_image(f"{name} matte", matte.astype("float32"))
        link(uv.outputs["UV"], texture.inputs["Vector"])
        link(texture.outputs["Color"], shader.inputs["Alpha"])
        if hasattr(material, "surface_render_method"):
            material.surface_render_method = "DITHERED"  # EEVEE honours alpha; Cycles always does
    return material
