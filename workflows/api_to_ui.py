"""Make the UI-format example workflows (ComfyUI's template browser) from the API-format ones.

    python workflows/api_to_ui.py http://127.0.0.1:8188

Reads each workflows/api/*.json, asks the running ComfyUI server for its /object_info (the
widget order of every node), and writes workflows/<name>.json, laid out as a person would: left to right
by the order data flows, no node over another, each node sized for its slots, widgets and image preview,
groups and a note from workflows/notes.json. Rerun after changing a workflow;
bench/workflow_layout.py checks the result in the real frontend.
"""

import json
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
LINK_TYPES_ARE_WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# the frontend's node geometry (LiteGraph): title bar, one slot row, one widget row
TITLE, SLOT, WIDGET = 30, 20, 24
# nodes that show an image under their widgets (an upload preview, a save or preview node, our prediction nodes)
IMAGE_AREA = {"LoadImage": 300, "PreviewImage": 280, "SaveImage": 280, "GenPerceptDepth": 250,
              "GenPerceptNormals": 250, "GenPerceptMatte": 250, "GenPerceptSaveMaps": 250}
WIDE = {"CLIPTextEncode": 400, "KSampler": 340, "Note": 380}
COLUMN_GAP, ROW_GAP, MARGIN, GROUP_PADDING = 90, 60, 60, 40
GROUP_COLOURS = ["#3f789e", "#8a8a3f", "#3f8a5c", "#8a3f6e"]


def _spec_inputs(info):
    """(name, type, options) of a node's inputs in declaration order."""
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            kind = spec[0]
            yield name, ("COMBO" if isinstance(kind, list) else kind), (spec[1] if len(spec) > 1 else {})


def convert(api: dict, object_info: dict) -> dict:
    ids = {key: index + 1 for index, key in enumerate(api)}
    nodes, links = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for key, node in api.items():
        info = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, kind, options in _spec_inputs(info):
            value = node["inputs"].get(name)
            linked = isinstance(value, list)
            if linked:
                source, slot = ids[value[0]], value[1]
                link_id = len(links) + 1
                source_type = object_info[api[value[0]]["class_type"]]["output"][slot]
                links.append([link_id, source, slot, ids[key], len(inputs), source_type])
                outgoing.setdefault((source, slot), []).append(link_id)
                entry = {"name": name, "type": kind if kind not in LINK_TYPES_ARE_WIDGETS else source_type, "link": link_id}
                if kind in LINK_TYPES_ARE_WIDGETS:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
            elif kind not in LINK_TYPES_ARE_WIDGETS:
                inputs.append({"name": name, "type": kind, "link": None})
            if kind in LINK_TYPES_ARE_WIDGETS:
                widgets.append(options.get("default") if linked or value is None else value)
                if options.get("control_after_generate"):
                    widgets.append("fixed")
                if options.get("image_upload"):
                    widgets.append("image")
        nodes.append({"id": ids[key], "type": node["class_type"], "inputs": inputs, "widgets_values": widgets,
                      "_outputs": info["output"], "_output_names": info["output_name"]})
    for index, node in enumerate(nodes):
        node["outputs"] = [{"name": name, "type": kind, "links": outgoing.get((node["id"], slot), []), "slot_index": slot}
                           for slot, (kind, name) in enumerate(zip(node.pop("_outputs"), node.pop("_output_names")))]
        node.update({"size": list(node_size(node)), "flags": {}, "order": index, "mode": 0,
                     "properties": {"Node name for S&R": node["type"]}})
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {}, "version": 0.4}


def node_size(node) -> tuple[int, int]:
    """Width and height that hold a node's slots, widgets and image area (at least what the frontend would give it)."""
    slots = max(len([i for i in node["inputs"] if "widget" not in i]), len(node["outputs"]))
    widgets = len(node["widgets_values"])
    height = TITLE + SLOT * slots + WIDGET * widgets + 16 + IMAGE_AREA.get(node["type"], 0)
    return WIDE.get(node["type"], 320), height


def lay_out(ui: dict, api_keys: list[str], notes: dict) -> dict:
    """Place the nodes left to right in columns by how far data has come (a node sits right of every node feeding
    it); each group of notes.json keeps to one horizontal lane, and groups that share a column get lanes of their
    own, one under the other, so no group box covers another; then the groups' boxes and the note."""
    by_id = {node["id"]: node for node in ui["nodes"]}
    ids = {key: index + 1 for index, key in enumerate(api_keys)}
    feeds = {node["id"]: [] for node in ui["nodes"]}
    for _, source, _, target, _, _ in ui["links"]:
        feeds[target].append(source)
    column: dict[int, int] = {}

    def depth(node_id):
        if node_id not in column:
            column[node_id] = 1 + max((depth(source) for source in feeds[node_id]), default=-1)
        return column[node_id]

    for node_id in by_id:
        depth(node_id)
    groups = [(title, [ids[key] for key in keys]) for title, keys in notes["groups"]]
    lanes: list[list[tuple[int, int]]] = []  # the column spans of the groups in each lane
    lane_of = {}
    for number, (_, members) in enumerate(groups):
        span = (min(column[n] for n in members), max(column[n] for n in members))
        lane = next((i for i, spans in enumerate(lanes) if all(span[1] < a or span[0] > b for a, b in spans)), None)
        if lane is None:
            lanes.append([])
            lane = len(lanes) - 1
        lanes[lane].append(span)
        lane_of.update({n: lane for n in members})
    widths = [max(by_id[n]["size"][0] for n in by_id if column[n] == c) for c in range(max(column.values()) + 1)]
    left = [MARGIN + WIDE["Note"] + COLUMN_GAP + sum(widths[:c]) + COLUMN_GAP * c for c in range(len(widths))]
    top = MARGIN + GROUP_PADDING + 20
    for lane in range(len(lanes)):
        bottom = top
        for c in range(len(widths)):
            members = sorted((n for n in by_id if column[n] == c and lane_of[n] == lane),
                             key=lambda n: (sum(by_id[s]["pos"][1] for s in feeds[n] if "pos" in by_id[s])
                                            / max(1, len(feeds[n])), n))
            y = top
            for node_id in members:
                by_id[node_id]["pos"] = [left[c], y]
                y += by_id[node_id]["size"][1] + ROW_GAP
            bottom = max(bottom, y)
        top = bottom + 2 * GROUP_PADDING
    for number, (title, members) in enumerate(groups):
        boxes = [(*by_id[n]["pos"], *by_id[n]["size"]) for n in members]
        x0, y0 = min(b[0] for b in boxes) - GROUP_PADDING // 2, min(b[1] for b in boxes) - GROUP_PADDING - 20
        x1, y1 = max(b[0] + b[2] for b in boxes) + GROUP_PADDING // 2, max(b[1] + b[3] for b in boxes) + GROUP_PADDING // 2
        ui["groups"].append({"title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                             "color": GROUP_COLOURS[number % len(GROUP_COLOURS)], "font_size": 22, "flags": {}})
    note_id = len(ui["nodes"]) + 1
    ui["nodes"].append({"id": note_id, "type": "Note", "pos": [MARGIN, MARGIN + GROUP_PADDING + 20],
                        "size": [WIDE["Note"], 300], "flags": {}, "order": note_id - 1, "mode": 0, "inputs": [],
                        "outputs": [], "properties": {"text": ""}, "widgets_values": [notes["note"]],
                        "color": "#432", "bgcolor": "#653"})
    ui["last_node_id"] = note_id
    return ui


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8188"
    with urllib.request.urlopen(f"{server}/object_info", timeout=60) as response:
        object_info = json.loads(response.read())
    notes = json.loads((HERE / "notes.json").read_text())
    for source in sorted((HERE / "api").glob("*.json")):
        api = json.loads(source.read_text())
        ui = lay_out(convert(api, object_info), list(api), notes[source.stem])
        (HERE / source.name).write_text(json.dumps(ui, indent=2))
        print(f"wrote {HERE / source.name}")


if __name__ == "__main__":
    main()
