"""Load every UI-format example workflow in ComfyUI's real frontend (headless Chromium) and check its layout.

    python bench/workflow_layout.py --comfyui DIR [--python PY] [--chromium /usr/bin/chromium] [--shots docs/workflows]

Starts ComfyUI on 127.0.0.1 with this repository as a custom node pack, opens its frontend, loads each
workflows/*.json as a user would (the frontend sizes every node by its own rules), then reads back what it drew:
each node's bounding box (title bar included) and each group's box. Reports, per workflow, the pairs of nodes that
overlap, groups that overlap, nodes that stick out of their group, and whether the flow runs left to right (every
link goes rightwards); saves a screenshot of each. Exits 1 if any workflow has an overlap or a leftward link.

Needs `pip install playwright` (its driver only: the browser is the system's, `apt-get install chromium`).
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

READ_LAYOUT = """() => {
  const graph = window.app.graph;
  const nodes = graph._nodes.map(n => ({id: n.id, type: n.type, box: Array.from(n.getBounding())}));
  const groups = (graph._groups || graph.groups || []).map(g => ({title: g.title, box: Array.from(g._bounding || g.bounding)}));
  const links = Object.values(graph.links || {}).filter(l => l).map(l => [l.origin_id, l.target_id]);
  return {nodes, groups, links};
}"""


FIT_VIEW = """() => {
  document.querySelectorAll('.p-toast-close-button, .p-dialog-close-button').forEach(b => b.click());
  return window.app.extensionManager.command.execute('Comfy.Canvas.FitView');
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def overlap(a, b, margin=0.0) -> bool:
    return (a[0] < b[0] + b[2] - margin and b[0] < a[0] + a[2] - margin and
            a[1] < b[1] + b[3] - margin and b[1] < a[1] + a[3] - margin)


def inside(inner, outer) -> bool:
    return (inner[0] >= outer[0] and inner[1] >= outer[1] and inner[0] + inner[2] <= outer[0] + outer[2]
            and inner[1] + inner[3] <= outer[1] + outer[3])


def check(layout: dict, members: dict[str, list[int]]) -> list[str]:
    """The problems of one drawn workflow (empty: none)."""
    problems, boxes = [], {node["id"]: node for node in layout["nodes"]}
    nodes = layout["nodes"]
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            if overlap(a["box"], b["box"]):
                problems.append(f"nodes {a['id']} {a['type']} and {b['id']} {b['type']} overlap")
    for i, a in enumerate(layout["groups"]):
        for b in layout["groups"][i + 1:]:
            if overlap(a["box"], b["box"]):
                problems.append(f"groups {a['title']!r} and {b['title']!r} overlap")
    for group in layout["groups"]:
        for node_id in members.get(group["title"], []):
            if not inside(boxes[node_id]["box"], group["box"]):
                problems.append(f"node {node_id} {boxes[node_id]['type']} sticks out of group {group['title']!r}")
    for origin, target in layout["links"]:
        if boxes[origin]["box"][0] >= boxes[target]["box"][0]:
            problems.append(f"link {origin} -> {target} runs right to left")
    return problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--comfyui", type=Path, required=True, help="a ComfyUI checkout")
    parser.add_argument("--python", default=sys.executable, help="a Python with ComfyUI's requirements")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--shots", type=Path, default=REPO / "docs" / "workflows")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    base = Path(tempfile.mkdtemp(prefix="genpercept-layout-"))
    for folder in ("custom_nodes", "input", "output", "user"):
        (base / folder).mkdir()
    (base / "custom_nodes" / "genpercept-bundle").symlink_to(REPO)
    shutil.copy(REPO / "examples" / "photo.jpg", base / "input" / "genpercept_example.jpg")  # the workflows' photo
    config = base / "extra_model_paths.yaml"
    config.write_text(f"layout:\n  base_path: {base}\n  custom_nodes: custom_nodes/\n")
    port = free_port()
    server = subprocess.Popen([args.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                               "--disable-auto-launch", "--input-directory", str(base / "input"),
                               "--output-directory", str(base / "output"), "--user-directory", str(base / "user"),
                               "--extra-model-paths-config", str(config)],
                              cwd=args.comfyui, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, failed = f"http://127.0.0.1:{port}", False
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/system_stats", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        notes = json.loads((REPO / "workflows" / "notes.json").read_text())
        args.shots.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 2400, "height": 1300})
            page.goto(url)
            page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
            page.wait_for_timeout(3000)
            page.keyboard.press("Escape")  # the first-run template browser
            for path in sorted((REPO / "workflows").glob("*.json")):
                if path.name == "notes.json":
                    continue
                workflow = json.loads(path.read_text())
                api_keys = list(json.loads((REPO / "workflows" / "api" / path.name).read_text()))
                page.evaluate("(graph) => window.app.loadGraphData(graph)", workflow)
                page.wait_for_timeout(1500)
                layout = page.evaluate(READ_LAYOUT)
                members = {title: [api_keys.index(key) + 1 for key in keys]
                           for title, keys in notes[path.stem]["groups"]}
                problems = check(layout, members)
                page.evaluate(FIT_VIEW)
                page.wait_for_timeout(800)
                page.screenshot(path=str(args.shots / f"{path.stem}.jpg"), type="jpeg", quality=80)
                print(f"{path.stem}: {len(layout['nodes'])} nodes, {len(layout['groups'])} groups, "
                      f"{'OK' if not problems else str(len(problems)) + ' problem(s)'}")
                for problem in problems:
                    print(f"  {problem}")
                failed |= bool(problems)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
