"""The video provider interface: every video vendor is asynchronous (submit → poll → download), and so is
this interface, so the job system can store the upstream's handle the moment it exists and resume
polling it after a restart instead of submitting (and paying for) the video again.

A video adapter is built from an `EndpointConfig` and a shared `httpx.AsyncClient` like the chat and
image adapters, knows nothing about jobs, storage or the web, and raises only the `ProviderError` tree:
`ContentFiltered` for a vendor's moderation refusal (with the vendor's reason), `ResultExpired` when a
result URL expired and cannot be fetched again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from mmstudio.providers.base import ProbeResult, RemoteModel
from mmstudio.providers.media.base import InputImage


@dataclass(frozen=True, slots=True)
class VideoCapabilities:
    """What a video model can do, as data. Empty tuples mean "any" is not claimed: the model takes none
    of that parameter (it is dropped from the upstream call and the response says so)."""

    durations: tuple[int, ...] = ()  # seconds the model accepts
    aspect_ratios: tuple[str, ...] = ()  # "16:9", "9:16", "1:1", ...
    resolutions: tuple[str, ...] = ()  # "480p", "720p", "1080p", or "1280x720" sizes
    image_to_video: bool = False  # a start frame
    text_to_video: bool = True  # False: it needs a start frame (Runway's image_to_video)
    end_frame: bool = False
    # The camera moves the model takes as a parameter (one per shot), named as in `CAMERA_MOVES`; a
    # model with none gets the camera in words inside its prompt.
    camera_moves: tuple[str, ...] = ()
    seed: bool = False
    negative_prompt: bool = False
    loop: bool = False  # a loop parameter of its own (a loop is otherwise its start frame as its end frame)
    price_per_second_usd: float | None = None
    poll_interval_s: float = 5.0  # what the vendor asks for between polls
    typical_seconds: float = 90.0  # how long a job usually takes (for estimated progress)
    key_env: str | None = None

    @property
    def camera_motion(self) -> bool:
        return bool(self.camera_moves)


# Every camera move a video model may take natively: pans, zooms, tilts and rolls, each way.
CAMERA_MOVES = (
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "zoom_in",
    "zoom_out",
    "tilt_up",
    "tilt_down",
    "roll_left",
    "roll_right",
)


@dataclass(frozen=True, slots=True)
class CameraMove:
    """One camera move for a model that takes one (`VideoCapabilities.camera_moves`): which, and how
    strong, 0 (barely) to 1 (as strong as the model goes)."""

    move: str
    strength: float


@dataclass(frozen=True, slots=True)
class VideoRequest:
    """One video. `model` is the upstream's own name (no ``provider/`` prefix); parameters are already
    checked against the model's capabilities (unsupported ones are None)."""

    model: str
    prompt: str
    duration_s: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    start_image: InputImage | None = None
    end_image: InputImage | None = None
    camera: CameraMove | None = None  # only for a model whose `camera_moves` has it
    extra: Mapping[str, Any] = field(default_factory=dict)
    handle: str | None = None  # for a `ChosenHandles` vendor: create the video under this handle


VideoState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class VideoStatus:
    """One poll's answer. `progress` is 0..100 when the vendor says, else None. When `state` is
    ``succeeded``, `result_url` (a temporary URL) or the adapter's content endpoint gives the bytes."""

    state: VideoState
    progress: float | None = None
    error: str | None = None  # the vendor's reason when failed (a moderation reason included)
    refused: bool = False  # failed because of the vendor's content policy
    result_url: str | None = None
    duration_s: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class ChosenHandles(Protocol):
    """A vendor that creates a video under a handle the caller chooses (ComfyUI's ``prompt_id``). The
    job stores the handle *before* the create call, so a create whose answer was lost (a cut connection,
    a worker killed mid-call) is found by asking for it, never submitted a second time."""

    def new_handle(self) -> str: ...

    async def knows(self, handle: str, model: str) -> bool:
        """Whether the vendor has a video under `handle` (queued, running or finished)."""
        ...


@runtime_checkable
class VideoAdapter(Protocol):
    protocol: ClassVar[str]

    async def submit(self, request: VideoRequest) -> str:
        """Create the video upstream; returns the vendor's handle (request id, operation name, task id).
        Raises before the vendor accepted anything, so a failure here never means a paid submission."""
        ...

    async def poll(self, handle: str, model: str) -> VideoStatus: ...

    def download(self, handle: str, status: VideoStatus, model: str) -> AsyncIterator[bytes]:
        """The finished video's bytes, streamed (MP4). Raises `ResultExpired` when the result cannot be
        fetched any more (an expired URL and no content endpoint to fetch it from again)."""
        ...

    async def cancel(self, handle: str, model: str) -> bool:
        """Ask the vendor to stop; False when it has no way to (the result is then discarded)."""
        ...

    async def list_models(self) -> list[RemoteModel]: ...

    async def probe(self) -> ProbeResult: ...
