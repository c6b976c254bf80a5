"""Writing files so that a failed or interrupted run never leaves a half-written one.

Every file is written to a temporary name in the target folder and renamed into place.
Standard library only.
"""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import GenPerceptError, OutputError

PARTIAL_PREFIX = ".partial-"  # temporary names: a process killed outright (SIGKILL) can leave one behind


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path`` (same suffix); move it into place only on success. A failed write
    (disk full, no permission) becomes a GenPerceptError naming the file."""
    path = Path(path)
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f"{PARTIAL_PREFIX}{path.stem}.", suffix=path.suffix)
        os.close(handle)
        yield Path(temp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; finished files get the usual permissions
        os.replace(temp, path)
    except OSError as error:
        raise OutputError(f"could not write {path} ({error.strerror or error}); free some disk space or write "
                          "to another folder") from error
    finally:
        if temp and os.path.exists(temp):
            os.remove(temp)


def check_writable_folder(folder: Path, create: bool = False) -> Path:
    """``folder`` after checking that files can be written there (it, or the folder it would be created in);
    GenPerceptError otherwise. Front ends call it before loading a model, so a bad output folder fails at once.
    ``create``: make the folder now (otherwise the first file written makes it)."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise GenPerceptError(f"the output folder {folder} cannot be made: {existing} is a file; choose a folder")
    try:
        if create or existing == folder:
            folder.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(dir=folder, prefix=PARTIAL_PREFIX)
            os.close(handle)
            os.remove(probe)
        elif not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise GenPerceptError(f"cannot write to the output folder {folder} ({error.strerror or error}); choose a "
                              "folder you can write to") from error
    return folder


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
