"""The assets photographic scenes are made of: where they come from, how they are unpacked, and their catalogue.

Everything arrives through package registries (no web downloads), into an assets folder outside the repository:

- ``@pmndrs/assets`` (npm): 18 Poly Haven HDRIs as base64 EXR inside JS modules -> ``hdri/pmndrs-<name>.exr``; CC0.
- Blender's studio lights (inside the bpy wheel): 8 Poly Haven HDRIs -> ``hdri/blender-<name>.exr``; CC0.
- Debian ``sweethome3d-furniture``: ~820 OBJ models with photographic textures -> ``furniture/<library>/...``;
  CC0 (BlendSwap-CC-0) or CC-BY-3.0 (the other libraries; see ``ATTRIBUTION.md`` written beside them).

``prepare_assets`` writes ``catalog.json``, the index the scene layouts draw from. Every pool is split in two by a
hash of the asset's name: test scenes draw only from the held-out part (``HELD_OUT_FRACTION``), so test backgrounds,
HDRIs and models are never seen in training.
"""

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ...atomic_files import write_json
from ...errors import GenPerceptError

CATALOG = "catalog.json"
HELD_OUT_FRACTION = 0.2
NPM_PACKAGE = "@pmndrs/assets"
DEBIAN_PACKAGE = "sweethome3d-furniture"
FURNITURE_LICENCES = {  # usr/share/doc/sweethome3d-furniture/copyright
    "BlendSwap-CC-0": "CC0-1.0",
    "BlendSwap-CC-BY": "CC-BY-3.0",
    "KatorLegaz": "CC-BY-3.0-US",
    "Reallusion": "CC-BY-3.0-US",
    "Scopia": "CC-BY-3.0",
}
TEXTURE_SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_TEXTURE_BYTES = 20_000  # smaller images in the archives are catalogue icons or flat swatches


def fetch_assets(root: Path) -> Path:
    """Download the packages into ``root`` with npm and apt-get (the registries' own clients), then prepare them."""
    root = Path(root)
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for command in (["npm", "pack", NPM_PACKAGE], ["apt-get", "download", DEBIAN_PACKAGE]):
        if shutil.which(command[0]) is None:
            raise GenPerceptError(f"{command[0]} is needed to fetch the photographic assets; install it or unpack "
                                  f"{command[-1]} into {downloads} yourself")
        subprocess.run(command, cwd=downloads, check=True)
    return prepare_assets(root)


def prepare_assets(root: Path) -> Path:
    """Unpack the downloaded packages in ``root/downloads`` and write the catalogue (idempotent)."""
    root = Path(root)
    downloads = root / "downloads"
    hdris = _unpack_hdris(root, downloads)
    furniture, textures = _unpack_furniture(root, downloads)
    write_json(root / CATALOG, {"hdris": hdris, "furniture": furniture, "textures": textures})
    _write_attribution(root, furniture)
    return root


def _unpack_hdris(root: Path, downloads: Path) -> list[dict]:
    import bpy  # the wheel carries Blender's studio lights

    folder = root / "hdri"
    folder.mkdir(parents=True, exist_ok=True)
    hdris = []
    for tarball in sorted(downloads.glob("pmndrs-assets-*.tgz")):
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                match = re.fullmatch(r"package/hdri/(\w+)\.exr\.js", member.name)
                if not match:
                    continue
                text = archive.extractfile(member).read().decode()
                payload = text.split("base64,", 1)[1].rsplit("'", 1)[0]
                target = folder / f"pmndrs-{match[1]}.exr"
                target.write_bytes(base64.b64decode(payload))
                hdris.append({"name": target.stem, "file": str(target.relative_to(root)), "licence": "CC0-1.0",
                              "source": f"{NPM_PACKAGE} (Poly Haven)"})
    studio_lights = Path(bpy.utils.system_resource("DATAFILES", path="studiolights/world"))
    for exr in sorted(studio_lights.glob("*.exr")):
        target = folder / f"blender-{exr.stem}.exr"
        shutil.copyfile(exr, target)
        hdris.append({"name": target.stem, "file": str(target.relative_to(root)), "licence": "CC0-1.0",
                      "source": "Blender studio lights (Poly Haven)"})
    if not hdris:
        raise GenPerceptError(f"no HDRIs found: {downloads} should hold the npm tarball of {NPM_PACKAGE}")
    return hdris


def _unpack_furniture(root: Path, downloads: Path) -> tuple[list[dict], list[dict]]:
    debs = sorted(downloads.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        raise GenPerceptError(f"no {DEBIAN_PACKAGE} package in {downloads}: run `apt-get download {DEBIAN_PACKAGE}` there")
    unpacked = downloads / "deb"
    if not unpacked.is_dir():
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], check=True)
    furniture, textures = [], []
    for archive_path in sorted((unpacked / "usr/share/sweethome3d/furniture").glob("*.sh3f")):
        library = archive_path.stem
        target = root / "furniture" / library
        with zipfile.ZipFile(archive_path) as archive:
            if not target.is_dir():
                archive.extractall(target)
            catalogue = archive.read("PluginFurnitureCatalog.properties").decode("latin-1")
            for info in archive.infolist():
                if info.filename.lower().endswith(TEXTURE_SUFFIXES) and "/" in info.filename.strip("/") \
                        and info.file_size >= MIN_TEXTURE_BYTES:
                    textures.append({"file": str((target / info.filename).relative_to(root)), "library": library,
                                     "licence": FURNITURE_LICENCES[library]})
        for item in _catalogue_items(catalogue):
            if item.get("doorOrWindow") == "true" or "model" not in item:
                continue
            furniture.append({
                "name": item.get("name", ""), "category": item.get("category", ""), "creator": item.get("creator", ""),
                "library": library, "licence": FURNITURE_LICENCES[library],
                "file": str((target / item["model"].lstrip("/")).relative_to(root)),
                "size": [float(item["width"]) / 100, float(item["depth"]) / 100, float(item["height"]) / 100],
                "elevation": float(item.get("elevation", 0)) / 100,
                "rotation": [float(v) for v in item["modelRotation"].split()] if "modelRotation" in item else None,
            })
    return furniture, textures


def _catalogue_items(properties: str) -> list[dict]:
    """SweetHome3D's catalogue (Java properties, ``key#N=value``) as one dict per N."""
    items: dict[int, dict] = {}
    for line in properties.splitlines():
        match = re.fullmatch(r"(\w+)#(\d+)\s*=\s*(.*)", line.strip())
        if match:
            items.setdefault(int(match[2]), {})[match[1]] = match[3].encode("latin-1").decode("unicode_escape")
    return [items[k] for k in sorted(items)]


def _write_attribution(root: Path, furniture: list[dict]):
    lines = ["# Attribution of the CC-BY models used in photographic scenes", "",
             "HDRIs (Poly Haven via @pmndrs/assets and Blender's studio lights) and BlendSwap-CC-0 models are CC0.",
             "The models below are CC-BY-3.0; textures inside their folders share the model's licence.", ""]
    for item in furniture:
        if item["licence"].startswith("CC-BY"):
            lines.append(f"- {item['name']} ({item['category']}), by {item['creator'] or item['library']}, "
                         f"SweetHome3D {item['library']} library, {item['licence']}: {item['file']}")
    (root / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")


def held_out(name: str) -> bool:
    """Whether an asset belongs to the test pool: a stable hash of its name, ``HELD_OUT_FRACTION`` of them."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32 < HELD_OUT_FRACTION


@dataclass
class AssetLibrary:
    """The catalogue of one assets folder, restricted to the pool of one split (test: the held-out assets)."""

    root: Path
    hdris: list[dict]
    furniture: list[dict]
    textures: list[dict]

    @classmethod
    def load(cls, root: Path, test_pool: bool) -> "AssetLibrary":
        root = Path(root)
        if not (root / CATALOG).is_file():
            raise GenPerceptError(f"{root} holds no {CATALOG}: run `genpercept fetch-assets {root}` first")
        catalog = json.loads((root / CATALOG).read_text())
        pick = {kind: [a for a in catalog[kind] if held_out(a["file"]) == test_pool] for kind in catalog}
        return cls(root, pick["hdris"], pick["furniture"], pick["textures"])

    def path(self, asset: dict) -> Path:
        return self.root / asset["file"]

    def furniture_in(self, *categories: str) -> list[dict]:
        return [item for item in self.furniture if item["category"] in categories]
