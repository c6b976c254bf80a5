"""The relief material: photo as base colour, predicted normals in object space, matte as alpha."""

from pathlib import Path

import bpy
from genpercept_bundle.conventions import normals_to_rgb

from .relief import float_image

# Image files Blender reads whose values are the maps' own (unit vectors for normals): they are used as they are,
# loaded lazily and packed, instead of converting a full-resolution array on the main thread
FLOAT_MAP_SUFFIXES = (".exr",)


def relief_material(name, photo_path=None, normals=None, matte=None, normal_file=None, matte_file=None):
    """A Principled BSDF material; each map is optional, as an array or (faster) a kept EXR file.

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

    def texture(image):
        node = nodes.new("ShaderNodeTexImage")
        node.image = image
        link(uv.outputs["UV"], node.inputs["Vector"])
        return node

    if photo_path:
        photo = texture(bpy.data.images.load(bpy.path.abspath(photo_path), check_existing=True))
        photo.image.colorspace_settings.name = "sRGB"
        link(photo.outputs["Color"], shader.inputs["Base Color"])
    if normal_file is not None and Path(normal_file).suffix.lower() in FLOAT_MAP_SUFFIXES:
        encode = nodes.new("ShaderNodeVectorMath")  # unit vectors -> (n + 1) / 2, what a Normal Map node reads
        encode.operation = "MULTIPLY_ADD"
        encode.inputs[1].default_value = encode.inputs[2].default_value = (0.5, 0.5, 0.5)
        link(texture(_kept_image(normal_file)).outputs["Color"], encode.inputs[0])
        normal_colour = encode.outputs["Vector"]
    elif normals is not None:
        normal_colour = texture(float_image(f"{name} normals", normals_to_rgb(normals))).outputs["Color"]
    else:
        normal_colour = None
    if normal_colour is not None:
        normal_map = nodes.new("ShaderNodeNormalMap")
        normal_map.space = "OBJECT"
        link(normal_colour, normal_map.inputs["Color"])
        link(normal_map.outputs["Normal"], shader.inputs["Normal"])
    if matte_file is not None and Path(matte_file).suffix.lower() in FLOAT_MAP_SUFFIXES:
        alpha = texture(_kept_image(matte_file))
    elif matte is not None:
        alpha = texture(float_image(f"{name} matte", matte.astype("float32")))
    else:
        alpha = None
    if alpha is not None:
        link(alpha.outputs["Color"], shader.inputs["Alpha"])
        if hasattr(material, "surface_render_method"):
            material.surface_render_method = "DITHERED"  # EEVEE honours alpha; Cycles always does
    return material


def _kept_image(path) -> "bpy.types.Image":
    """A map file as a Non-Color image, packed into the .blend (its bytes: nothing is decoded here)."""
    image = bpy.data.images.load(str(path), check_existing=True)
    image.colorspace_settings.name = "Non-Color"
    if image.packed_file is None:
        image.pack()
    return image
