"""GenPercept Relief: relief meshes and materials from photos with predicted depth, normals and mattes."""

from . import ui


def register():
    ui.register()


def unregister():
    ui.unregister()
