"""Writing files so that a failed or interrupted run never leaves a half-written one.

Every file is written to a temporary name in the target folder and renamed into place.
Standard library only.
"""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

PARTIAL_PREFIX = ".partial-"  # temporary names: a process killed outright (SIGKILL) can leave one behind


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path`` (same suffix); move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f"{PARTIAL_PREFIX}{path.stem}.", suffix=path.suffix)
    os.close(handle)
    try:
        yield Path(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; finished files get the usual permissions
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def write_json(path: Path, payload: dict) -> Path:
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(payload, indent=2))
    return path


def remove_partial_files(folder: Path) -> int:
    """Delete the temporary files that killed writers left in ``folder``; returns how many. Only for a folder no
    other process is writing to (``batch`` holds a lock on its output folder)."""
    leftovers = list(Path(folder).glob(f"{PARTIAL_PREFIX}*")) if Path(folder).is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)
