"""Photographic training scenes rendered with Cycles (Blender as a module, ``bpy``; imported only when rendering).

Modules by concept: ``assets`` (what the scenes are made of, fetched from package registries, with licences),
``layouts`` (rooms, streets, HDRI backdrops, drawn from a seed), ``subjects`` (people with hair, furry animals, thin and
semi-transparent objects), ``materials``, ``lighting``, ``models`` (catalogue OBJ models), ``render_passes`` (the
photo and the exact depth / normal passes), ``composites`` (a subject over its background, as matting sets are
made), ``camera_effects`` (lens, exposure, noise, JPEG), ``scenes`` (one scene end to end) and ``sequences`` (a
moving camera).
"""
