"""Make the UI-format example workflows (ComfyUI's template browser) from the API-format ones.

    python workflows/api_to_ui.py http://127.0.0.1:8188

Reads each workflows/api/*.json, asks the running ComfyUI server for its /object_info (the
widget order of every node), and writes workflows/<name>.json. Rerun after changing a workflow.
"""

import json
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).parent
LINK_TYPES_ARE_WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


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
        column, row = divmod(index, 4)
        node.update({"pos": [60 + 380 * column, 60 + 260 * row], "size": [340, 220], "flags": {}, "order": index,
                     "mode": 0, "properties": {"Node name for S&R": node["type"]}})
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {}, "version": 0.4}


def main():
    server = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8188"
    with urllib.request.urlopen(f"{server}/object_info", timeout=60) as response:
        object_info = json.loads(response.read())
    for source in sorted((HERE / "api").glob("*.json")):
        ui = convert(json.loads(source.read_text()), object_info)
        (HERE / source.name).write_text(json.dumps(ui, indent=2))
        print(f"wrote {HERE / source.name}")


if __name__ == "__main__":
    main()
