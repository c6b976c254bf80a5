"""Light: the world (an HDRI or an analytic sky), and lamps (ceiling area lights, the sun)."""

import numpy as np


def build_world(world, assets_root):
    """The scene's world: the HDRI turned about +Z by ``world.rotation`` at ``world.strength``, or a sky texture."""
    import bpy

    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("world")
    tree = scene.world.node_tree
    nodes, links = tree.nodes, tree.links
    background = nodes["Background"]
    background.inputs["Strength"].default_value = world.strength
    if world.hdri is not None:
        environment = nodes.new("ShaderNodeTexEnvironment")
        environment.image = bpy.data.images.load(str(assets_root / world.hdri), check_existing=True)
        coordinates = nodes.new("ShaderNodeTexCoord")
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Rotation"].default_value[2] = world.rotation
        links.new(coordinates.outputs["Generated"], mapping.inputs["Vector"])
        links.new(mapping.outputs["Vector"], environment.inputs["Vector"])
        links.new(environment.outputs["Color"], background.inputs["Color"])
    else:
        sky = nodes.new("ShaderNodeTexSky")
        sky.sky_type = world.sky["type"]
        sky.sun_direction = _sun_direction(world.sky["sun_elevation"], world.sky["sun_rotation"])  # the lamp's too
        sky.turbidity = world.sky["turbidity"]
        links.new(sky.outputs["Color"], background.inputs["Color"])


def _sun_direction(elevation: float, rotation: float):
    """Toward the sun; a sun lamp turned by Euler (pi/2 - elevation, 0, rotation) shines the other way."""
    return (float(np.cos(elevation) * np.sin(rotation)), float(-np.cos(elevation) * np.cos(rotation)),
            float(np.sin(elevation)))


def build_lamps(lamps) -> list:
    import bpy

    objects = []
    for index, lamp in enumerate(lamps):
        light = bpy.data.lights.new(f"lamp{index}", lamp.kind)
        light.energy = lamp.energy
        light.color = lamp.colour
        if lamp.kind == "AREA":
            light.size = lamp.size
        elif lamp.kind == "SUN":
            light.angle = lamp.size
        else:
            light.shadow_soft_size = lamp.size
        obj = bpy.data.objects.new(light.name, light)
        obj.location = lamp.location
        obj.rotation_euler = lamp.rotation
        bpy.context.scene.collection.objects.link(obj)
        objects.append(obj)
    return objects
