"""Before/after grid of real photos: for each photo a row per model, the photo then its depth, normals and matte.

    python bench/before_after.py --before OLD_MODEL [--after NEW_MODEL] [--out docs/before_after.jpg] [PHOTO ...]

Each model predicts with its defaults (as `genpercept predict` does); the maps are drawn with the previews' own
conversions (turbo depth, OpenGL normal colours, grey matte). The default photos are a street (nuScenes, from
shared/eval/real_dev) and two portraits (examples/cameraman.jpg, examples/astronaut.jpg).
"""

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

from genpercept_bundle import GenPerceptPredictor, load_image
from genpercept_bundle.conventions import colorize_depth, normals_to_rgb
from genpercept_bundle.inference.predictor import as_rgb_batch
from genpercept_bundle.map_files import to_uint8

HERE = Path(__file__).parent
PHOTOS = [HERE.parent.parent / "shared" / "eval" / "real_dev" / "depth" / "nuscenes_cam_front_rgb.jpg",
          HERE.parent / "examples" / "cameraman.jpg", HERE.parent / "examples" / "astronaut.jpg"]
TASKS = ("depth", "normal", "matte")
CELL_HEIGHT = 150
LABEL_HEIGHT = 22


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("photos", nargs="*", type=Path, default=PHOTOS)
    parser.add_argument("--before", required=True, help="model folder of the 'before' column")
    parser.add_argument("--after", default=None, help="model folder of the 'after' column (default: the embedded)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "before_after.jpg")
    args = parser.parse_args()
    columns = {"before": args.before, "after": args.after}
    cells = {name: _prediction_cells(model, args.photos) for name, model in columns.items()}
    rows, row_labels = [], []
    for index, photo in enumerate(args.photos):
        picture = Image.open(photo).convert("RGB")
        for name in columns:
            rows.append([picture] + cells[name][index])
            row_labels.append(name)
    _write_grid(rows, ["photo", *TASKS], row_labels, args.out)
    print(f"wrote {args.out}")


def _prediction_cells(model, photos) -> list[list[Image.Image]]:
    predictor = GenPerceptPredictor.from_pretrained(model, list(TASKS), device="cpu")
    cells = []
    for photo in photos:
        rgb = as_rgb_batch(load_image(photo))
        maps = {task: predictor.predict(rgb, task).maps[0] for task in TASKS}
        cells.append([Image.fromarray(colorize_depth(maps["depth"])),
                      Image.fromarray(to_uint8(normals_to_rgb(maps["normal"]))),
                      Image.fromarray(to_uint8(maps["matte"])).convert("RGB")])
    return cells


def _write_grid(rows, column_labels, row_labels, out: Path):
    width = max(round(row[0].width * CELL_HEIGHT / row[0].height) for row in rows)
    left = 60  # the row labels
    sheet = Image.new("RGB", (left + len(column_labels) * (width + 4), LABEL_HEIGHT + len(rows) * (CELL_HEIGHT + 4)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for column, label in enumerate(column_labels):
        draw.text((left + column * (width + 4) + 4, 4), label, fill="black")
    for y, (row, label) in enumerate(zip(rows, row_labels)):
        top = LABEL_HEIGHT + y * (CELL_HEIGHT + 4)
        draw.text((4, top + CELL_HEIGHT // 2), label, fill="black")
        for column, image in enumerate(row):
            scale = min(width / image.width, CELL_HEIGHT / image.height)
            cell = image.resize((round(image.width * scale), round(image.height * scale)))
            sheet.paste(cell, (left + column * (width + 4), top))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=85)


if __name__ == "__main__":
    main()
