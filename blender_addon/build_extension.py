"""Build the Blender extension zip with the bundle's core inside, as a wheel listed in the manifest.

    python blender_addon/build_extension.py --output-dir dist

The add-on reads and converts maps with the core's numpy-only modules (map_files, conventions,
models.folders): never copies of them. Blender installs the wheel beside the extension; with torch
importable inside Blender, the same wheel also predicts in-process (it carries the embedded model).
Uses Blender's own extension builder: `blender` on PATH, or the bpy module when it is installed.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ADDON = Path(__file__).resolve().parent
REPO = ADDON.parent


def build(output_dir: Path, blender: str | None = None) -> Path:
    """The extension zip in ``output_dir``; returns its path."""
    wheels = tomllib.loads((ADDON / "blender_manifest.toml").read_text())["wheels"]
    with tempfile.TemporaryDirectory(prefix="genpercept_extension_") as staging:
        source = Path(staging) / ADDON.name
        shutil.copytree(ADDON, source, ignore=shutil.ignore_patterns("__pycache__", "wheels", Path(__file__).name))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                        str(source / "wheels"), str(REPO)], check=True)
        missing = [w for w in wheels if not (source / w).is_file()]
        if missing:
            built = ", ".join(p.name for p in (source / "wheels").iterdir())
            raise SystemExit(f"the manifest lists {', '.join(missing)} but pip built {built}: update "
                             "blender_manifest.toml's wheels to the package's version")
        output_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(_builder(blender) + ["build", "--source-dir", str(source), "--output-dir", str(output_dir)],
                       check=True)
    return max(output_dir.glob("*.zip"), key=lambda p: p.stat().st_mtime)


def _builder(blender: str | None) -> list[str]:
    if blender or shutil.which("blender"):
        return [blender or "blender", "--command", "extension"]
    import bpy  # Blender as a Python module: run its builder script with this Python

    tool = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    return [sys.executable, str(tool)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist")
    parser.add_argument("--blender", default=None, help="the blender executable (default: blender on PATH, or bpy)")
    args = parser.parse_args()
    print(build(args.output_dir, args.blender))
