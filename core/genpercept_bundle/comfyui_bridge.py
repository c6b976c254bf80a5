"""Predict maps on a running ComfyUI (the user's GPU and models) through its HTTP API, and bring them back as map files.

For hosts without the models or a GPU, e.g. the Blender add-on on a laptop while ComfyUI runs on the workstation:
the photo is uploaded (POST /upload/image), a workflow of this pack's nodes is queued (POST /prompt): Load Image ->
GenPercept Model Loader -> Depth / Normals / Matte -> GenPercept Save Maps (EXR), its end is awaited (GET /history),
and each map file and its provenance sidecar is downloaded (GET /view) into a local folder under the names
``genpercept predict`` gives them (<photo stem>_<task>.exr + .json), so ``map_files.find_maps`` and every front end
read them as if predicted here. Standard library only.
"""

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .atomic_files import atomic_path, write_json
from .errors import GenPerceptError
from .tasks import DEFAULT_TASKS, get_task

EMBEDDED = "embedded small model (offline default)"  # the loader's name for the embedded model
NODES = {"depth": ("GenPerceptDepth", 1), "normal": ("GenPerceptNormals", 1), "matte": ("GenPerceptMatte", 2)}
POLL_SECONDS = 0.5


class ComfyUIBridge:
    """A ComfyUI server at ``url`` (e.g. http://127.0.0.1:8188) running this node pack."""

    def __init__(self, url: str, timeout: float = 30.0):
        parsed = urllib.parse.urlparse(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise GenPerceptError(f"{url!r} is not a ComfyUI address; give one like http://127.0.0.1:8188")
        self.url, self.timeout = url.strip().rstrip("/"), timeout

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise GenPerceptError(f"ComfyUI at {self.url} refused {path.split('?')[0]}: {error.code} {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise GenPerceptError(f"cannot reach ComfyUI at {self.url} ({getattr(error, 'reason', error)}); is it "
                                  "running, and is the address right?") from None

    def check(self) -> list[str]:
        """The model choices of the server's GenPercept loader; GenPerceptError if the server lacks this pack."""
        info = json.loads(self._request("/object_info/GenPerceptModelLoader"))
        if "GenPerceptModelLoader" not in info:
            raise GenPerceptError(f"ComfyUI at {self.url} does not have the GenPercept nodes; install this pack into "
                                  "its custom_nodes folder")
        spec = info["GenPerceptModelLoader"]["input"]["required"]["model"]
        return list(spec[1]["options"] if spec[0] == "COMBO" else spec[0])

    def upload(self, photo: Path) -> str:
        """Upload a photo into the server's input folder; the name Load Image takes."""
        boundary = uuid.uuid4().hex
        name = f"genpercept_bridge_{uuid.uuid4().hex[:8]}{Path(photo).suffix.lower()}"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + Path(photo).read_bytes() + \
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n".encode()
        answer = json.loads(self._request("/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return answer["name"] if not answer.get("subfolder") else f"{answer['subfolder']}/{answer['name']}"

    def run(self, workflow: dict, on_progress=None, cancelled=None, limit: float = 3600.0) -> dict:
        """Queue an API-format workflow and wait for it; its history entry (outputs). ``on_progress(done, total)``
        counts finished nodes; ``cancelled()`` returning True interrupts the server's run."""
        client = uuid.uuid4().hex
        answer = json.loads(self._request("/prompt", json.dumps({"prompt": workflow, "client_id": client}).encode(),
                                          {"Content-Type": "application/json"}))
        if answer.get("node_errors"):
            raise GenPerceptError(f"ComfyUI refused the workflow: {json.dumps(answer['node_errors'])[:2000]}")
        prompt_id, deadline = answer["prompt_id"], time.monotonic() + limit
        while time.monotonic() < deadline:
            history = json.loads(self._request(f"/history/{prompt_id}"))
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") != "success":
                    messages = [m for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
                    reason = messages[0][1].get("exception_message", "").strip() if messages else "no reason given"
                    raise GenPerceptError(f"ComfyUI could not run the GenPercept workflow: {reason}")
                return entry
            if on_progress is not None and entry:
                on_progress(len(entry.get("outputs", {})), len(workflow))
            if cancelled is not None and cancelled():
                self._request("/interrupt", b"{}", {"Content-Type": "application/json"})
                raise InterruptedError("the prediction on ComfyUI was cancelled")
            time.sleep(POLL_SECONDS)
        raise GenPerceptError(f"ComfyUI did not finish the GenPercept workflow within {limit:.0f} s")

    def fetch(self, entry: dict) -> bytes:
        """The bytes of an output file named as ComfyUI names them (filename / subfolder / type)."""
        query = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                                        "type": entry.get("type", "output")})
        return self._request(f"/view?{query}")

    def predict_maps(self, photo: Path, out: Path, tasks=DEFAULT_TASKS, model: str = EMBEDDED,
                     processing_resolution: int = -1, on_progress=None, cancelled=None) -> dict[str, Path]:
        """Predict ``tasks`` of ``photo`` with ``model`` (a loader choice of the server) and write the maps into
        ``out`` as <stem>_<task>.exr with their sidecars; returns task -> map file (a disparity-only model's depth
        comes back as its disparity)."""
        photo, out = Path(photo), Path(out)
        tasks = [get_task(task).name for task in tasks]
        unknown = [task for task in tasks if task not in NODES]
        if unknown:
            raise GenPerceptError(f"ComfyUI's GenPercept nodes predict {', '.join(NODES)}, not {', '.join(unknown)}")
        models = self.check()
        if model not in models:
            raise GenPerceptError(f"ComfyUI at {self.url} has no GenPercept model {model!r}; it has: "
                                  f"{', '.join(models)}")
        if not photo.is_file():
            raise GenPerceptError(f"{photo} is not a file")
        workflow = bridge_workflow(self.upload(photo), tasks, model, processing_resolution, uuid.uuid4().hex[:8])
        outputs = self.run(workflow, on_progress, cancelled)["outputs"]
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for task in tasks:
            entry = outputs[f"save_{task}"]["genpercept_maps"][0]
            meta = json.loads(self.fetch({**entry, "filename": entry["filename"].rsplit(".", 1)[0] + ".json"}))
            served = meta["task"]  # a disparity-only model answers the depth node with disparity
            written[served] = out / f"{photo.stem}_{served}.exr"
            with atomic_path(written[served]) as temporary:
                Path(temporary).write_bytes(self.fetch(entry))
            meta.update(source=str(photo), files=[written[served].name], predicted_by=f"ComfyUI at {self.url}")
            write_json(out / f"{photo.stem}_{served}.json", meta)  # the sidecar last: the maps are complete
        return written


def bridge_workflow(image: str, tasks, model: str, processing_resolution: int, tag: str) -> dict:
    """The API-format workflow the bridge queues: one loader, one prediction node and one EXR Save Maps per task."""
    workflow = {
        "image": {"class_type": "LoadImage", "inputs": {"image": image}},
        "model": {"class_type": "GenPerceptModelLoader", "inputs": {
            "model": model, **{task: task in tasks for task in DEFAULT_TASKS}, "device": "auto", "dtype": "auto"}},
    }
    for task in tasks:
        node, raw_output = NODES[task]
        inputs = {"model": ["model", 0], "image": ["image", 0], "processing_resolution": processing_resolution,
                  "batch_size": 1}
        inputs.update({"depth": {"normalization": "none", "invert": False}, "normal": {"convention": "opengl"},
                       "matte": {}}[task])
        workflow[f"predict_{task}"] = {"class_type": node, "inputs": inputs}
        workflow[f"save_{task}"] = {"class_type": "GenPerceptSaveMaps", "inputs": {
            "maps": [f"predict_{task}", raw_output], "filename_prefix": f"genpercept/bridge/{tag}", "format": "exr"}}
    return workflow
