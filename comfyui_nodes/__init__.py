"""ComfyUI node pack over the GenPercept core predictor.

``operations`` and ``models`` run without ComfyUI (and are tested that way);
``nodes`` holds the V3 node schemas and is imported only inside ComfyUI,
through the repository root's ``__init__.py``.
"""
