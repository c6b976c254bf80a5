"""Downloading a model from a hub: a local server (127.0.0.1) speaking enough of the Hugging Face hub's HTTP API for
huggingface_hub serves a tiny model in the released layout; download, resume, damage and offline reuse."""

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from comfyui_nodes.models import load_model as comfy_load_model
from genpercept_bundle import GenPerceptError, GenPerceptPredictor
from genpercept_bundle.models.architectures import write_random_checkpoint

REPO_ID = "someone/genpercept-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class MockHub(ThreadingHTTPServer):
    """Serves the files of ``folder`` as the repo REPO_ID at COMMIT. ``cut_once`` / ``cut_always``: downloads of those
    files stop after half the bytes asked for (a dropped connection), the first time / every time; ``damaged``: files
    served with other bytes than stored. ``requests``: (method, path, first byte asked for)."""

    daemon_threads = True

    def __init__(self, folder: Path):
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.folder, self.cut_once, self.damaged, self.requests = folder, set(), {}, []
        self.cut_always = set()  # a connection that always drops midway

    def files(self) -> list[str]:
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())

    def content(self, name: str) -> bytes:
        return self.damaged.get(name) or (self.folder / name).read_bytes()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.respond(body=False)

    def do_GET(self):
        self.respond(body=True)

    def respond(self, body: bool):
        hub: MockHub = self.server
        path = self.path.split("?")[0]
        start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
        hub.requests.append((self.command, path, start))
        if path in (f"/api/models/{REPO_ID}/revision/main", f"/api/models/{REPO_ID}/revision/{COMMIT}"):
            return self.json({"id": REPO_ID, "sha": COMMIT, "siblings": [{"rfilename": f} for f in hub.files()]})
        if path.startswith(f"/api/models/{REPO_ID}/tree/"):
            return self.json([{"type": "file", "path": f, "size": len(hub.content(f)),
                               "oid": hashlib.sha1(hub.content(f)).hexdigest()} for f in hub.files()])
        match = re.fullmatch(rf"/{REPO_ID}/resolve/(main|{COMMIT})/(.+)", path)
        if not match or match.group(2) not in hub.files():
            return self.send_error(404)
        name = match.group(2)
        data = hub.content(name)
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256((hub.folder / name).read_bytes()).hexdigest()}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if body:
            if name in hub.cut_once or name in hub.cut_always:
                hub.cut_once.discard(name)
                self.wfile.write(data[start:start + (len(data) - start) // 2])
                self.wfile.flush()
                self.connection.close()  # the connection drops midway
                return
            self.wfile.write(data[start:])

    def json(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    repo = write_random_checkpoint(tmp_path / "repo", tasks=["depth", "normal"])
    server = MockHub(repo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    # a tiny model's files are smaller than huggingface_hub's 10 MB read chunks: read smaller ones, so a dropped
    # connection leaves data behind to resume from, as with real checkpoints
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 1 << 16)
    yield server
    server.shutdown()
    server.server_close()


def downloaded(tmp_path, tasks=("depth",), allow_download=True):
    return GenPerceptPredictor.from_pretrained(REPO_ID, tasks, device="cpu", allow_download=allow_download,
                                               download_root=tmp_path / "models")


def test_a_download_fetches_only_what_the_tasks_need(hub, tmp_path):
    predictor = downloaded(tmp_path)
    local = tmp_path / "models" / "someone--genpercept-tiny"
    assert predictor.model.path == local and predictor.loaded_tasks == ["depth"]
    assert (local / "unet_depth_v2" / "diffusion_pytorch_model.safetensors").is_file()
    assert not (local / "unet_normal_v2").exists()  # not asked for
    assert any(path.endswith("unet_depth_v2/diffusion_pytorch_model.safetensors") for _, path, _ in hub.requests)


WEIGHTS = "unet_depth_v2/diffusion_pytorch_model.safetensors"


def resumed_from(hub) -> list[int]:
    return [start for command, path, start in hub.requests if command == "GET" and path.endswith(WEIGHTS) and start]


def test_a_dropped_connection_is_resumed(hub, tmp_path):
    hub.cut_once.add(WEIGHTS)
    assert downloaded(tmp_path).loaded_tasks == ["depth"]
    assert resumed_from(hub)  # asked again from where the data stopped, not from the start


def test_a_failed_download_says_what_to_do_and_a_rerun_completes_it(hub, tmp_path):
    hub.cut_always.add(WEIGHTS)
    with pytest.raises(GenPerceptError, match="could not download someone/genpercept-tiny .*put vae/config.json"):
        downloaded(tmp_path)
    local = tmp_path / "models" / "someone--genpercept-tiny"
    assert not (local / WEIGHTS).exists()  # no truncated weights where the loader would look
    hub.cut_always.clear()
    assert downloaded(tmp_path).loaded_tasks == ["depth"]
    assert (local / WEIGHTS).read_bytes() == (hub.folder / WEIGHTS).read_bytes()


def test_a_damaged_download_is_named_with_what_to_do(hub, tmp_path):
    hub.damaged[WEIGHTS] = (hub.folder / WEIGHTS).read_bytes()[:100]
    with pytest.raises(GenPerceptError, match="not a valid safetensors file .*re-download it"):
        downloaded(tmp_path)


def test_offline_reuse_and_offline_messages(hub, tmp_path):
    with pytest.raises(GenPerceptError, match="is not downloaded: put vae/config.json .* into .*someone--genpercept-tiny"):
        downloaded(tmp_path, allow_download=False)
    downloaded(tmp_path)
    hub.shutdown()  # the hub is gone: what was downloaded is used as it is
    assert downloaded(tmp_path, allow_download=False).loaded_tasks == ["depth"]
    assert downloaded(tmp_path).loaded_tasks == ["depth"]


def test_the_comfyui_download_node_loads_from_the_hub(hub, tmp_path):
    model = comfy_load_model(REPO_ID, ["depth", "normal"], "cpu", download_root=tmp_path / "comfy_models",
                             allow_download=True)
    assert model.tasks == ["depth", "normal"]
    assert (tmp_path / "comfy_models" / "someone--genpercept-tiny" / "unet_normal_v2").is_dir()


def test_a_pipeline_repo_downloads_its_one_task_without_variants_or_extras(tmp_path, monkeypatch):
    """A Marigold repo as released: fp16 variants beside the weights, a feature extractor, a safety checker; only
    the UNet, VAE, scheduler, model index (and the text encoder and tokenizer, for the embedding) come down."""
    from genpercept_bundle.models.architectures import write_random_pipeline

    repo = write_random_pipeline(tmp_path / "repo", "marigold", "depth")
    for extra in ("unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
                  "feature_extractor/preprocessor_config.json", "safety_checker/model.safetensors"):
        (repo / extra).parent.mkdir(exist_ok=True)
        (repo / extra).write_bytes(b"not needed")
    server = MockHub(repo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    try:
        predictor = downloaded(tmp_path, tasks=None)
    finally:
        server.shutdown()
        server.server_close()
    assert predictor.family.name == "marigold" and predictor.loaded_tasks == ["depth"]
    fetched = {path.split(f"/resolve/{COMMIT}/")[-1].split("/resolve/main/")[-1] for command, path, _ in server.requests
               if command == "GET" and "/resolve/" in path}
    assert "unet/diffusion_pytorch_model.safetensors" in fetched and "scheduler/scheduler_config.json" in fetched
    assert not [name for name in fetched if "fp16" in name or name.startswith(("feature_extractor", "safety_checker"))]
