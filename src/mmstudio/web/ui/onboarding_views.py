"""The onboarding page's one fragment: the platforms to choose from, cloud providers with their key status.

Under /api/ui/onboarding (gateway keys protect it). Testing, detecting, saving and choosing the active
model go through the JSON API (/api/models/...) from onboarding.js, as any other client would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mmstudio.domain.endpoints import DEFAULT_URLS
from mmstudio.domain.types import Endpoint, ModelView
from mmstudio.web.deps import StudioDep
from mmstudio.web.ui.header import CHAT_MODALITIES
from mmstudio.web.ui.templating import render

router = APIRouter(prefix="/api/ui/onboarding", include_in_schema=False)


@dataclass(frozen=True)
class LocalPlatform:
    value: str
    label: str
    url: str
    hint: str
    start: str  # what to do when nothing answers at the address
    takes_key: bool
    makes_images: bool = False  # an image engine: its models go to the Image Studio, not the active model


LOCAL_PLATFORMS = (
    LocalPlatform(
        "lmstudio",
        "LM Studio",
        DEFAULT_URLS["lmstudio"],
        "Its local server, port 1234",
        "In LM Studio, open the Developer tab and start the server, then check the port.",
        True,
    ),
    LocalPlatform(
        "ollama",
        "Ollama",
        DEFAULT_URLS["ollama"],
        "The Ollama app or ollama serve, port 11434",
        "Start the Ollama app (or run ollama serve), then check the address.",
        False,
    ),
    LocalPlatform(
        "openai_compat",
        "Other OpenAI-compatible server",
        DEFAULT_URLS["openai_compat"],
        "llama.cpp, vLLM, LocalAI, a proxy… (the URL ends in /v1)",
        "Start the server, then check the address and port.",
        True,
    ),
    LocalPlatform(
        "comfyui",
        "ComfyUI (images)",
        DEFAULT_URLS["comfyui"],
        "Its server, port 8188; each checkpoint becomes an image model",
        "Start ComfyUI (python main.py --listen 127.0.0.1 --port 8188), then check the address.",
        False,
        makes_images=True,
    ),
    LocalPlatform(
        "automatic1111",
        "AUTOMATIC1111 / Forge (images)",
        DEFAULT_URLS["automatic1111"],
        "The WebUI started with --api, port 7860",
        "Start the WebUI with --api (e.g. ./webui.sh --api), then check the address.",
        True,
        makes_images=True,
    ),
    LocalPlatform(
        "openai_images",
        "OpenAI-compatible images server",
        DEFAULT_URLS["openai_images"],
        "LocalAI, stable-diffusion.cpp's sd-server… (the URL ends in /v1)",
        "Start the server, then check the address and port.",
        True,
        makes_images=True,
    ),
)


@dataclass(frozen=True)
class CloudPlatform:
    endpoint: Endpoint
    chat: list[ModelView]
    code: list[ModelView]


def cloud_platforms(studio: Any) -> list[CloudPlatform]:
    registry = studio.registry
    views: list[ModelView] = [v for v in registry.views() if v.entry.modality in CHAT_MODALITIES]
    views.sort(key=lambda v: v.entry.display_name.lower())
    return [
        CloudPlatform(
            endpoint,
            [v for v in views if v.entry.provider_id == endpoint.provider_id and v.entry.modality == "chat"],
            [v for v in views if v.entry.provider_id == endpoint.provider_id and v.entry.modality == "code"],
        )
        for endpoint in registry.endpoints()
        if endpoint.kind == "cloud"
    ]


@router.get("/platforms", response_class=HTMLResponse)
async def platforms(request: Request, studio: StudioDep) -> HTMLResponse:
    return render(
        request, "partials/onboarding_platforms.html", local=LOCAL_PLATFORMS, cloud=cloud_platforms(studio)
    )
