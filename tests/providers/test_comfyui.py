"""ComfyUIAdapter against the fake ComfyUI over real HTTP and a real websocket."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from mmstudio.errors import (
    BadRequest,
    ConfigError,
    InvalidRequest,
    ProviderConnectionError,
    ProviderError,
    ProviderProtocolError,
)
from mmstudio.providers.base import EndpointConfig
from mmstudio.providers.media import create_image_adapter, engine_image_capabilities
from mmstudio.providers.media.base import ImageAdapter, ImageProgress, ImageRequest, InputImage
from mmstudio.providers.media.comfyui import (
    COMFYUI_CAPABILITIES,
    ComfyUIAdapter,
    load_workflow,
    snap_size,
)
from mmstudio.providers.transport import make_http_client
from tests.fakes.base import closed_port
from tests.fakes.comfyui_server import ComfyReply, FakeComfyUIServer
from tests.fakes.images import make_image

CHECKPOINTS = ["v1-5-pruned-emaonly.safetensors", "sdxl_base_1.0.safetensors"]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeComfyUIServer]:
    with FakeComfyUIServer(checkpoints=CHECKPOINTS) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh(server: FakeComfyUIServer) -> Iterator[None]:
    server.reset()
    yield
    server.settle()  # never leave a held or queued prompt behind for the next test


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_http_client() as c:
        yield c


def make(client: httpx.AsyncClient, base_url: str) -> ComfyUIAdapter:
    adapter = ComfyUIAdapter(EndpointConfig(base_url=base_url, provider="comfyui", timeout=10.0), client)
    adapter.poll_interval = 0.01  # the tests wait on the fake's state, not on the clock
    return adapter


@pytest.fixture
def adapter(client: httpx.AsyncClient, server: FakeComfyUIServer) -> ComfyUIAdapter:
    return make(client, server.url)


def ask(**kwargs: Any) -> ImageRequest:
    values: dict[str, Any] = {"model": CHECKPOINTS[0], "prompt": "a lighthouse at dusk", "size": "64x64"}
    values.update(kwargs)
    return ImageRequest(**values)


def dims(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def sent_prompt(server: FakeComfyUIServer, index: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = server.requests_to("/prompt")[index].json()
    return body


async def wait(server: FakeComfyUIServer, predicate: Any) -> None:
    await asyncio.to_thread(server.wait_for, predicate)


async def queue_foreign(server: FakeComfyUIServer, steps: int = 3) -> str:
    """Another user's prompt, queued without a client id: ComfyUI sends its messages to every socket."""
    graph = load_workflow("txt2img").fill(
        {"prompt": "someone else's", "steps": steps, "width": 64, "height": 64}
    )
    async with httpx.AsyncClient() as other:
        answer = await other.post(f"{server.url}/prompt", json={"prompt": graph})
    assert answer.status_code == 200, answer.text
    prompt_id: str = answer.json()["prompt_id"]
    return prompt_id


def write(tmp_path: Path, data: Any, name: str = "mine.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def custom_workflow() -> dict[str, Any]:
    """A user's own graph: other node ids, the seed in one place, a custom slot and a preview node."""
    graph = {k: v for k, v in load_workflow("txt2img").graph.items()}
    renumbered = json.loads(json.dumps(graph).replace('"3"', '"30"').replace('"9"', '"90"'))
    renumbered["91"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    renumbered["mmstudio"] = {
        "slots": {
            "prompt": ["6", "inputs", "text"],
            "seed": [["30", "inputs", "seed"]],
            "steps": ["30", "inputs", "steps"],
            "guidance": ["30", "inputs", "cfg"],
            "batch_size": ["5", "inputs", "batch_size"],
        }
    }
    return renumbered


# --- the interface, the registry and the templates ----------------------------------------


async def test_adapter_satisfies_the_protocol_and_is_registered(
    client: httpx.AsyncClient, server: FakeComfyUIServer
) -> None:
    adapter = create_image_adapter("comfyui", EndpointConfig(base_url=server.url), client)
    assert isinstance(adapter, ComfyUIAdapter) and isinstance(adapter, ImageAdapter)
    assert adapter.protocol == "comfyui"
    assert engine_image_capabilities("comfyui") is COMFYUI_CAPABILITIES
    caps = COMFYUI_CAPABILITIES
    assert (caps.supports_references, caps.supports_edit, caps.max_n, caps.max_references) == (
        True,
        True,
        8,
        1,
    )
    assert caps.output_formats == ("png",) and not caps.supports_mask


def test_builtin_templates_declare_their_slots() -> None:
    txt2img, img2img = load_workflow("txt2img"), load_workflow("img2img")
    assert "mmstudio" not in txt2img.graph and "mmstudio" not in img2img.graph
    assert txt2img.slots["prompt"] == (("6", "inputs", "text"),)
    assert not txt2img.has("reference_image") and img2img.has("reference_image")
    assert img2img.graph["10"]["class_type"] == "LoadImage" and txt2img.outputs == ("9",)
    for workflow in (txt2img, img2img):
        assert {
            "prompt",
            "negative_prompt",
            "seed",
            "steps",
            "width",
            "height",
            "batch_size",
            "checkpoint",
        } <= set(workflow.slots)


def test_snap_size() -> None:
    assert snap_size(640, 480) == (640, 480)
    assert snap_size(650, 3) == (648, 16)
    assert snap_size(99_999, 1021) == (16384, 1024)


# --- txt2img ------------------------------------------------------------------------------


async def test_txt2img_fills_the_slots_and_returns_the_saved_images(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    request = ask(
        model=CHECKPOINTS[1],
        n=2,
        size="640x480",
        seed=42,
        steps=6,
        negative_prompt="blurry",
        extra={"cfg": 5.5, "sampler_name": "dpmpp_2m", "not_a_slot": 1},
    )
    result = await adapter.generate(request)

    body = sent_prompt(server)
    graph = body["prompt"]
    assert "mmstudio" not in graph
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert graph["7"]["inputs"]["text"] == "blurry"
    sampler = graph["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"]) == (
        42,
        6,
        5.5,
        "dpmpp_2m",
    )
    assert graph["5"]["inputs"] == {"width": 640, "height": 480, "batch_size": 2}
    assert graph["4"]["inputs"]["ckpt_name"] == CHECKPOINTS[1]
    # The socket was opened for this prompt's client before the prompt was queued.
    assert server.ws_clients == [body["client_id"]]
    assert server.requests.index(server.requests_to("/prompt")[0]) == 0

    assert [(i.media_type, dims(i.data), i.seed) for i in result.images] == [
        ("image/png", (640, 480), 42)
    ] * 2
    assert result.images[0].data != result.images[1].data
    assert result.info["prompt_id"] == body["prompt_id"] and result.info["workflow"] == "txt2img"
    views = server.requests_to("/view")
    assert [v.query["type"] for v in views] == ["output", "output"]
    assert views[0].query["filename"].startswith("mmstudio_")


async def test_a_random_seed_is_reported_and_unset_slots_keep_the_template(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    result = await adapter.generate(ask(model="default", size=None))
    graph = sent_prompt(server)["prompt"]
    seed = graph["3"]["inputs"]["seed"]
    assert 0 <= seed < 2**32
    assert result.images[0].seed == seed and result.info["seed"] == seed
    assert graph["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"  # the file's own
    assert graph["5"]["inputs"] == {"width": 512, "height": 512, "batch_size": 1}
    assert graph["3"]["inputs"]["steps"] == 20 and graph["7"]["inputs"]["text"] == ""
    assert dims(result.images[0].data) == (512, 512)


# --- img2img ------------------------------------------------------------------------------


async def test_img2img_uploads_the_reference_into_the_load_image_slot(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    photo = make_image(320, 256, "PNG", (10, 20, 30))
    result = await adapter.generate(
        ask(size=None, n=2, references=(InputImage(photo),), extra={"denoise": 0.4})
    )

    upload = server.requests_to("/upload/image")
    assert len(upload) == 1 and upload[0].headers["content-type"].startswith("multipart/form-data")
    assert b'name="image"; filename="mmstudio-' in upload[0].body
    assert b'name="overwrite"\r\n\r\ntrue' in upload[0].body
    (name,) = server.inputs
    assert server.inputs[name] == photo
    graph = sent_prompt(server)["prompt"]
    assert graph["10"] == {
        "class_type": "LoadImage",
        "inputs": {"image": name},
        "_meta": {"title": "Reference image"},
    }
    assert graph["13"]["inputs"]["amount"] == 2 and graph["3"]["inputs"]["denoise"] == 0.4
    assert (graph["11"]["inputs"]["width"], graph["11"]["inputs"]["height"]) == (0, 0)  # keeps its size
    assert [dims(i.data) for i in result.images] == [(320, 256)] * 2
    assert result.info["workflow"] == "img2img"

    # The same reference again is the same file (named by content), now at a given size.
    await adapter.generate(ask(size="128x96", references=(InputImage(photo),)))
    assert list(server.inputs) == [name]
    graph = sent_prompt(server, 1)["prompt"]
    assert graph["10"]["inputs"]["image"] == name
    assert (graph["11"]["inputs"]["width"], graph["11"]["inputs"]["height"]) == (128, 96)


async def test_a_reference_needs_a_workflow_with_a_reference_slot(adapter: ComfyUIAdapter) -> None:
    with pytest.raises(InvalidRequest, match="no reference_image slot"):
        await adapter.generate(ask(workflow="txt2img", references=(InputImage(make_image(8, 8)),)))
    with pytest.raises(InvalidRequest, match="needs a reference image"):
        await adapter.generate(ask(workflow="img2img"))


# --- progress -----------------------------------------------------------------------------


async def test_progress_is_reported_step_by_step_in_order(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    result = await adapter.generate(ask(steps=4), progress)
    assert len(result.images) == 1
    assert [(p.step, p.steps, p.percent) for p in seen] == [
        (1, 4, 25.0),
        (2, 4, 50.0),
        (3, 4, 75.0),
        (4, 4, 100.0),
    ]
    assert all(p.preview is None for p in seen)


async def test_previews_ride_on_the_last_progress(adapter: ComfyUIAdapter, server: FakeComfyUIServer) -> None:
    server.script(ComfyReply(previews=True))
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    await adapter.generate(ask(steps=2), progress)
    previews = [p for p in seen if p.preview is not None]
    assert [(p.step, p.steps) for p in previews] == [(1, 2), (2, 2)]
    assert all(p.preview is not None and dims(p.preview) == (32, 32) for p in previews)


async def test_other_prompts_messages_are_ignored(adapter: ComfyUIAdapter, server: FakeComfyUIServer) -> None:
    server.hold(after_step=1)
    foreign = await queue_foreign(server, steps=3)
    await wait(server, lambda s: s.running is not None and s.running.prompt_id == foreign)
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    task = asyncio.create_task(adapter.generate(ask(steps=2), progress))
    await wait(server, lambda s: len(s.pending) == 1)
    server.release()
    result = await task

    # The foreign prompt's progress (of 3) and its "executing: null" reached our socket too.
    assert any(client == "*" and m["type"] == "progress" for client, m in server.sent)
    assert [(p.step, p.steps) for p in seen] == [(1, 2), (2, 2)]
    assert result.info["prompt_id"] != foreign and len(result.images) == 1
    assert server.history[foreign]["status"]["status_str"] == "success"


# --- without the websocket ----------------------------------------------------------------


async def test_a_dropped_websocket_falls_back_to_polling_history(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    server.script(ComfyReply(drop_socket_after=1))
    server.hold(after_step=1)
    seen: list[ImageProgress] = []

    async def progress(update: ImageProgress) -> None:
        seen.append(update)

    task = asyncio.create_task(adapter.generate(ask(steps=3), progress))
    # The socket is gone and the prompt still runs: the adapter must be polling the history now.
    await wait(server, lambda s: len([r for r in s.requests if r.path.startswith("/history/")]) >= 2)
    assert not task.done()
    server.release()
    result = await task

    prompt_id = result.info["prompt_id"]
    assert len(result.images) == 1 and server.history[prompt_id]["status"]["status_str"] == "success"
    assert [(p.step, p.steps) for p in seen] == [(1, 3)]  # no socket, no more progress
    assert server.requests_to(f"/history/{prompt_id}") and server.requests_to("/queue")


async def test_a_refused_websocket_means_polling_from_the_start(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    server.refuse_websocket = True
    result = await adapter.generate(ask(seed=9))
    assert len(server.ws_clients) == 1  # it was tried
    assert result.images[0].seed == 9 and dims(result.images[0].data) == (64, 64)
    assert server.requests_to(f"/history/{result.info['prompt_id']}")


async def test_a_prompt_that_leaves_the_queue_unrun_is_an_error(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    adapter.idle_check_interval = 0.05  # the socket goes quiet: the adapter must look for itself
    server.hold(after_step=1)
    await queue_foreign(server)
    await wait(server, lambda s: s.running is not None)
    task = asyncio.create_task(adapter.generate(ask()))
    await wait(server, lambda s: len(s.pending) == 1)
    async with httpx.AsyncClient() as other:
        assert (await other.post(f"{server.url}/queue", json={"clear": True})).status_code == 200
    with pytest.raises(ProviderError, match="neither queued nor in the history"):
        await task


# --- errors -------------------------------------------------------------------------------


async def test_node_errors_are_a_bad_request_naming_the_node(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    with pytest.raises(BadRequest) as info:
        await adapter.generate(ask(model="no-such-model.safetensors"))
    message = info.value.message
    assert info.value.status == 400 and not info.value.retryable
    assert "Prompt outputs failed validation" in message
    assert "node 4 (CheckpointLoaderSimple): Value not in list" in message
    assert "no-such-model.safetensors" in message
    assert not server.pending and not server.history


async def test_a_missing_input_and_an_unknown_node_class(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer, tmp_path: Path
) -> None:
    data = custom_workflow()
    del data["30"]["inputs"]["model"]
    with pytest.raises(BadRequest, match=r"node 30 \(KSampler\): Required input is missing: model"):
        await adapter.generate(ask(workflow=str(write(tmp_path, data))))

    data = custom_workflow()
    data["5"]["class_type"] = "EmptySD3LatentImage"  # a node this ComfyUI does not have
    with pytest.raises(BadRequest) as info:
        await adapter.generate(ask(workflow=str(write(tmp_path, data, "sd3.json"))))
    assert (
        "Cannot execute because node EmptySD3LatentImage does not exist. (Node ID '#5')" in info.value.message
    )


async def test_an_execution_error_names_the_node_and_the_exception(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    server.script(ComfyReply(fail_node="3"))
    with pytest.raises(ProviderError) as info:
        await adapter.generate(ask())
    assert type(info.value) is ProviderError
    assert info.value.message == (
        "comfyui: node 3 (KSampler) failed: "
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )


async def test_an_execution_error_found_by_polling(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    server.refuse_websocket = True
    server.script(
        ComfyReply(fail_node="VAEDecode", exception_type="RuntimeError", exception_message="bad vae")
    )
    with pytest.raises(ProviderError, match=r"node 8 \(VAEDecode\) failed: RuntimeError: bad vae"):
        await adapter.generate(ask())


async def test_bytes_that_are_not_an_image_are_a_protocol_error(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    server.script(ComfyReply(garbage_view=True))
    with pytest.raises(ProviderProtocolError, match="not a PNG, JPEG, WebP or GIF"):
        await adapter.generate(ask())


async def test_a_scripted_server_error(adapter: ComfyUIAdapter, server: FakeComfyUIServer) -> None:
    server.script(ComfyReply(status=500, error_body={"error": "Internal Server Error"}))
    with pytest.raises(ProviderError, match="HTTP 500") as info:
        await adapter.generate(ask())
    assert info.value.retryable


# --- cancellation -------------------------------------------------------------------------


async def test_cancelling_deletes_and_interrupts_our_running_prompt(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    reached = asyncio.Event()

    async def progress(update: ImageProgress) -> None:
        if update.step == 2:
            reached.set()

    server.hold(after_step=2)
    task = asyncio.create_task(adapter.generate(ask(steps=10), progress))
    await reached.wait()
    prompt_id = sent_prompt(server)["prompt_id"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [r.json() for r in server.requests_to("/queue") if r.method == "POST"] == [{"delete": [prompt_id]}]
    assert server.interrupts == [{"prompt_id": prompt_id}]
    await wait(server, lambda s: prompt_id in s.history)
    assert server.interrupted_prompts == [prompt_id]
    assert server.history[prompt_id]["status"]["messages"][-1][0] == "execution_interrupted"


async def test_cancelling_a_queued_prompt_leaves_another_users_run_alone(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer
) -> None:
    server.hold(after_step=1)
    foreign = await queue_foreign(server)
    await wait(server, lambda s: s.running is not None and s.running.prompt_id == foreign)
    task = asyncio.create_task(adapter.generate(ask()))
    await wait(server, lambda s: len(s.pending) == 1)
    ours = server.queued_ids()[0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert [r.json() for r in server.requests_to("/queue") if r.method == "POST"] == [{"delete": [ours]}]
    assert server.requests_to("/interrupt") == [] and server.interrupts == []
    assert not server.pending
    assert server.running is not None and server.running.prompt_id == foreign
    server.release()
    await wait(server, lambda s: foreign in s.history)
    assert server.history[foreign]["status"]["status_str"] == "success" and ours not in server.history


# --- workflows ----------------------------------------------------------------------------


async def test_a_users_workflow_file_end_to_end(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer, tmp_path: Path
) -> None:
    path = write(tmp_path, custom_workflow())
    request = ask(
        workflow=str(path),
        seed=77,
        steps=3,
        n=2,
        extra={"guidance": 3.5},
        negative_prompt="ignored",
        size="96x96",
    )
    result = await adapter.generate(request)

    graph = sent_prompt(server)["prompt"]
    assert "mmstudio" not in graph
    assert graph["30"]["inputs"]["seed"] == 77 and graph["30"]["inputs"]["cfg"] == 3.5
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dusk"
    assert graph["7"]["inputs"]["text"] == ""  # no negative_prompt slot: nothing written
    assert graph["5"]["inputs"] == {"width": 512, "height": 512, "batch_size": 2}  # no size slots
    # No "outputs": the SaveImage images are returned, not PreviewImage's temp ones.
    assert [i.seed for i in result.images] == [77, 77] and [dims(i.data) for i in result.images] == [
        (512, 512)
    ] * 2
    assert {v.query["type"] for v in server.requests_to("/view")} == {"output"}
    assert result.info["workflow"] == "mine"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["mmstudio"]["slots"].update(seed=["99", "inputs", "seed"]), "slot 'seed'.*'99'"),
        (lambda d: d["mmstudio"]["slots"].update(seed=["30", "inputs", "noise"]), "slot 'seed'.*'noise'"),
        (lambda d: d["mmstudio"]["slots"].pop("prompt"), "required slot 'prompt' is missing"),
        (lambda d: d["mmstudio"]["slots"].update(steps=["30", "inputs", "model"]), "slot 'steps'.*a link"),
        (lambda d: d["mmstudio"]["slots"].update(steps="30.inputs.steps"), "slot 'steps' is not a path"),
        (lambda d: d.pop("mmstudio"), 'has no "mmstudio"'),
        (lambda d: d["mmstudio"].update(outputs=["12"]), "outputs must be a list of node ids"),
        (lambda d: d["5"].pop("class_type"), "node '5' is not an object with a class_type"),
    ],
)
def test_workflow_validation_names_the_file_and_the_slot(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = custom_workflow()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=expected) as info:
        load_workflow(path)
    assert str(path) in info.value.message


def test_files_that_are_not_api_workflows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid JSON") as info:
        load_workflow(write(tmp_path, "{not json", "broken.json"))
    assert str(tmp_path / "broken.json") in info.value.message
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_workflow(write(tmp_path, [1, 2], "list.json"))
    with pytest.raises(ConfigError, match="UI format"):
        load_workflow(write(tmp_path, {"nodes": [], "links": [], "version": 0.4}, "ui.json"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_workflow(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="unknown ComfyUI workflow 'inpaint'"):
        load_workflow("inpaint")
    with pytest.raises(ConfigError, match="absolute path"):
        load_workflow("relative/mine.json")


async def test_a_bad_workflow_fails_before_anything_is_sent(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer, tmp_path: Path
) -> None:
    path = write(tmp_path, "{}", "empty.json")
    with pytest.raises(ConfigError, match=r"empty\.json"):
        await adapter.generate(ask(workflow=str(path)))
    assert server.requests == [] and server.ws_clients == []


# --- models and probe ---------------------------------------------------------------------


@pytest.mark.parametrize("style", ["list", "combo"])
async def test_list_models_from_object_info(
    adapter: ComfyUIAdapter, server: FakeComfyUIServer, style: str
) -> None:
    server.combo_style = style
    models = await adapter.list_models()
    assert [m.id for m in models] == CHECKPOINTS
    (request,) = server.requests
    assert request.path == "/object_info/CheckpointLoaderSimple"


async def test_probe(adapter: ComfyUIAdapter, server: FakeComfyUIServer, client: httpx.AsyncClient) -> None:
    ok = await adapter.probe()
    assert ok.ok and ok.error is None
    assert [r.path for r in server.requests] == ["/system_stats"]
    down = await make(client, f"http://127.0.0.1:{closed_port()}").probe()
    assert not down.ok and down.error is not None and "refused" in down.error


async def test_an_unreachable_server_is_a_connection_error(client: httpx.AsyncClient) -> None:
    adapter = make(client, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderConnectionError, match="refused"):
        await adapter.generate(ask(prompt=str(uuid.uuid4())))
