"""The composition root and Python API: `Studio.open(settings)` wires storage, adapters and the registry.

async with await Studio.open(Settings.from_env()) as studio:
    async for event in studio.stream_chat("ollama/llama3.2", [Message.text("user", "Hi")]):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from mmstudio.config import ImageTimeouts, RateLimit, Timeouts
from mmstudio.domain.chat.compare import CompareService
from mmstudio.domain.chat.knowledge import KnowledgeService
from mmstudio.domain.chat.service import ChatService
from mmstudio.domain.codegen.service import CodegenService
from mmstudio.domain.jobs.service import JobService
from mmstudio.domain.jobs.worker import JobWorker
from mmstudio.domain.keys import GatewayKeys
from mmstudio.domain.loop_lag import LoopLagMonitor
from mmstudio.domain.media.image_jobs import ImageJobHandler, ImageJobs
from mmstudio.domain.media.images import ImageService
from mmstudio.domain.media.store import MediaStore
from mmstudio.domain.metrics import MetricsRecorder
from mmstudio.domain.ratelimit import RateLimiter
from mmstudio.domain.registry import ModelRegistry
from mmstudio.domain.router import Routed, RoutedStream, RouteOptions, Router
from mmstudio.domain.story.service import StoryService
from mmstudio.domain.story.tiers import Tiers
from mmstudio.domain.types import Endpoint
from mmstudio.domain.video.export import KIND as EXPORT_KIND
from mmstudio.domain.video.export import ExportJobHandler
from mmstudio.domain.video.handler import VideoJobHandler
from mmstudio.domain.video.local import LocalVideoEngines
from mmstudio.domain.video.models import VideoModels
from mmstudio.domain.video.service import VideoService
from mmstudio.domain.video.studio import VideoStudio
from mmstudio.providers import create_adapter
from mmstudio.providers.base import (
    ChatRequest,
    EndpointConfig,
    Message,
    ProviderAdapter,
)
from mmstudio.providers.media import (
    CLOUD_VIDEO_MODELS,
    LOCAL_VIDEO_MODELS,
    create_image_adapter,
    create_video_adapter,
    local_video_models,
    local_video_names,
)
from mmstudio.providers.media.base import ImageAdapter
from mmstudio.providers.media.comfyui import load_workflow
from mmstudio.providers.media.video_base import VideoAdapter
from mmstudio.providers.transport import make_http_client
from mmstudio.settings import Settings
from mmstudio.storage.chat_repo import ChatRepository
from mmstudio.storage.codegen_repo import CodegenRepository
from mmstudio.storage.compare_repo import CompareRepository
from mmstudio.storage.db import create_engine, migrate, session_factory
from mmstudio.storage.jobs_repo import JobRepository
from mmstudio.storage.keys_repo import KeyRepository
from mmstudio.storage.knowledge_repo import KnowledgeRepository
from mmstudio.storage.media_files import MediaFiles
from mmstudio.storage.media_repo import MediaRepository
from mmstudio.storage.metrics_repo import MetricsRepository
from mmstudio.storage.repositories import EndpointRepository, PreferenceRepository, UsageRepository
from mmstudio.storage.runner import Runner, open_runner
from mmstudio.storage.secrets import SecretBox
from mmstudio.storage.story_repo import StoryRepository
from mmstudio.storage.video_repo import VideoProjectRepository

if TYPE_CHECKING:
    from mmstudio.storage.job_queue import ProcrastinateQueue

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"  # the per-key limit's subject while gateway keys are off
QUIRKS = {"lmstudio": frozenset({"lmstudio"}), "xai": frozenset({"xai"})}


class RouterLimits:
    """The router's view of the rate limiter: per key and per model, requests and tokens."""

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter

    async def check_key(self, key_id: str | None, limit: RateLimit | None) -> None:
        subject = self.limiter.for_key(key_id or ANONYMOUS, limit)
        if subject is not None:
            await self.limiter.hit(subject)

    async def check_model(self, model_id: str) -> None:
        subject = self.limiter.for_model(model_id)
        if subject is not None:
            await self.limiter.hit(subject)

    async def count_tokens(
        self, key_id: str | None, key_limit: RateLimit | None, model_id: str, tokens: int
    ) -> None:
        for subject in (
            self.limiter.for_key(key_id or ANONYMOUS, key_limit),
            self.limiter.for_model(model_id),
        ):
            if subject is not None:
                await self.limiter.add_tokens(subject, tokens)


def _endpoint_config(endpoint: Endpoint, timeouts: Timeouts | ImageTimeouts) -> EndpointConfig:
    return EndpointConfig(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        provider=endpoint.provider_id,
        quirks=QUIRKS.get(endpoint.flavor, frozenset()),
        timeout=timeouts.local if endpoint.kind == "local" else timeouts.cloud,
    )


class Studio:
    limiter: RateLimiter
    metrics: MetricsRecorder
    loop_lag: LoopLagMonitor
    router: Router
    keys: GatewayKeys
    knowledge: KnowledgeService
    compare: CompareService
    conversations: ChatService
    codegen: CodegenService
    media: MediaStore
    images: ImageService
    image_jobs: ImageJobs
    jobs: JobService
    videos: VideoService
    video_studio: VideoStudio
    stories: StoryService
    local_videos: LocalVideoEngines
    worker: JobWorker

    def __init__(
        self, settings: Settings, engine: Any, client: httpx.AsyncClient, registry: ModelRegistry
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics_engine: Any = None  # SQLite: the request metrics' own connection (see open())
        self.client = client
        self.registry = registry
        self.chat_db: Runner | None = None  # where Chat Studio's SQL runs (its own threads on SQLite)
        self._background: set[asyncio.Task[Any]] = set()
        self.queue: ProcrastinateQueue | None = None  # the procrastinate engine's (None: the table engine)

    @classmethod
    async def open(cls, settings: Settings, *, environ: dict[str, str] | None = None) -> Studio:
        """Migrate the database and load the registry. No network: call `start_background()` for that."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        job_engine = settings.job_engine  # a bad videos.engine fails here, before anything is opened
        engine = create_engine(settings.resolved_database_url)
        try:
            await migrate(engine)
        except Exception:
            await engine.dispose()
            raise
        sessions = session_factory(engine)
        env = dict(os.environ if environ is None else environ)
        box = SecretBox.from_data_dir(settings.data_dir, env.get("MMSTUDIO_SECRET_KEY"))
        client = make_http_client(max_connections=200)
        timeouts = settings.config.timeouts

        def factory(endpoint: Endpoint) -> ProviderAdapter:
            return create_adapter(endpoint.protocol, _endpoint_config(endpoint, timeouts), client)

        def image_factory(endpoint: Endpoint) -> ImageAdapter:
            assert endpoint.image_protocol is not None
            config = _endpoint_config(endpoint, settings.config.images.timeouts)
            return create_image_adapter(endpoint.image_protocol, config, client)

        # Built-in local image engines, detected in the background like Ollama and LM Studio.
        image_engines = (
            {"comfyui": settings.comfyui_url, "automatic1111": settings.a1111_url}
            if settings.config.detect_local
            else {}
        )

        registry = ModelRegistry(
            config=settings.config,
            cloud=settings.cloud,
            ollama_url=settings.ollama_url,
            lmstudio_url=settings.lmstudio_url,
            endpoint_store=EndpointRepository(sessions, box),
            usage_store=UsageRepository(sessions),
            adapter_factory=factory,
            environ=env,
            preference_store=PreferenceRepository(sessions),
            image_adapter_factory=image_factory,
            image_engines=image_engines,
        )
        studio = cls(settings, engine, client, registry)
        try:
            studio.limiter = RateLimiter(settings.config.limits, settings.redis_url)
            metrics_sessions = sessions
            database = engine.url.database or ""
            if engine.dialect.name == "sqlite" and database and ":memory:" not in database:
                # Request metrics get a connection of their own (overflow ones close when returned). Each
                # SQLite connection caches the pages it reads and the batch INSERTs it prepares (~3 MB
                # for the metrics table): shared through the pool, every pooled connection in turn
                # took those on, and the server's memory rose by steps under load.
                studio.metrics_engine = create_engine(
                    settings.resolved_database_url, pool_size=1, max_overflow=4
                )
                metrics_sessions = session_factory(studio.metrics_engine)
            studio.metrics = MetricsRecorder(MetricsRepository(metrics_sessions), settings.config.metrics)
            studio.loop_lag = LoopLagMonitor(
                studio.metrics.registry, interval_seconds=settings.config.metrics.loop_lag_interval_ms / 1000
            )
            studio.keys = GatewayKeys(KeyRepository(sessions), settings.api_keys)
            await studio.keys.load()
            await registry.load()
            studio.router = Router(
                registry,
                settings.config,
                limiter=RouterLimits(studio.limiter),
                metrics=studio.metrics,
                on_success=registry.note_session,
            )
            dialect = engine.dialect.name
            studio.chat_db = open_runner(engine)
            studio.knowledge = KnowledgeService(KnowledgeRepository(sessions, dialect), settings.config.chat)
            studio.compare = CompareService(
                CompareRepository(sessions, dialect), studio.router, settings.config.chat
            )
            studio.conversations = ChatService(
                ChatRepository(studio.chat_db),
                studio.router,
                registry,
                studio.knowledge,
                settings.config.chat,
            )
            studio.codegen = CodegenService(
                CodegenRepository(sessions), studio.router, settings.config.codegen, studio.limiter
            )
            for workflow in settings.config.images.workflows.values():
                load_workflow(workflow)  # a bad file fails the start, naming the file and the slot
            studio.media = MediaStore(
                MediaFiles(settings.data_dir / "media"), MediaRepository(sessions), settings.config.images
            )
            await studio.media.prepare()  # temp files a crash left mid-write are removed
            studio.images = ImageService(registry, studio.router, studio.media, settings.config)
            vendors = {**settings.cloud, **settings.media_cloud}

            def video_adapter(provider: str) -> VideoAdapter:
                vendor = vendors[provider]
                config = EndpointConfig(
                    base_url=vendor.base_url,
                    api_key=vendor.api_key,
                    provider=provider,
                    timeout=settings.config.images.timeouts.cloud,
                )
                return create_video_adapter(CLOUD_VIDEO_MODELS[provider][0], config, client)

            def local_video_adapter(endpoint: Endpoint) -> VideoAdapter:
                assert endpoint.image_protocol is not None
                protocol = LOCAL_VIDEO_MODELS[endpoint.image_protocol][0]
                config = _endpoint_config(endpoint, settings.config.images.timeouts)
                return create_video_adapter(protocol, config, client)

            studio.local_videos = LocalVideoEngines(
                registry,
                {
                    flavor: (local_video_models(flavor), local_video_names(flavor))
                    for flavor in LOCAL_VIDEO_MODELS
                },
                local_video_adapter,
            )
            video_models = VideoModels(
                {p: v.enabled for p, v in vendors.items()}, video_adapter, studio.local_videos
            )
            if job_engine == "procrastinate":
                from mmstudio.storage.job_queue import ProcrastinateQueue

                studio.queue = ProcrastinateQueue(
                    settings.resolved_database_url,
                    lease_seconds=settings.config.videos.lease_seconds,
                    concurrency=settings.config.videos.concurrency,
                )
                await studio.queue.open()  # its schema applied when absent
            studio.jobs = JobService(JobRepository(sessions), queue=studio.queue)
            studio.videos = VideoService(video_models, studio.jobs, studio.media)
            studio.video_studio = VideoStudio(
                VideoProjectRepository(sessions), video_models, studio.media, studio.videos
            )
            studio.image_jobs = ImageJobs(studio.images, studio.jobs)
            studio.stories = StoryService(
                StoryRepository(sessions),
                Tiers(settings.config.stories),
                studio.router,
                registry,
                studio.image_jobs,
                studio.videos,
                video_models,
                studio.jobs,
                studio.media,
            )
            studio.worker = JobWorker(
                JobRepository(sessions),
                {
                    "image": ImageJobHandler(studio.images),
                    EXPORT_KIND: ExportJobHandler(studio.media),
                    "video": VideoJobHandler(
                        functools.partial(video_models.resolve, usable_only=False),
                        studio.media,
                        poll_interval_s=settings.config.videos.poll_interval_s,
                        backoff_s=settings.config.videos.retry_backoff_s,
                    ),
                },
                concurrency=settings.config.videos.concurrency,
                lease_seconds=settings.config.videos.lease_seconds,
                idle_seconds=2.0,  # new and cancelled jobs wake it at once
                cap_wait_seconds=settings.config.videos.lease_seconds / 3,  # procrastinate: then retried
                on_change=studio.jobs.changed,
                wake=studio.jobs.wake,
                provider_cap=lambda provider: settings.config.videos.provider_cap(
                    provider, local=provider not in vendors
                ),
            )
            studio.jobs.stop_now = studio.worker.cancel_now
            await studio.conversations.recover()  # answers a crash cut short become `interrupted`
            await studio.compare.recover()
            await studio.codegen.recover()
            await studio.stories.recover()  # scenes a stop cut short become `failed`, with a retry
        except Exception:
            await studio.close()
            raise
        return studio

    def start_background(self) -> None:
        """Detection and the health monitor, in the background: start-up never waits for an engine."""
        self._spawn(self.registry.detect(), "mmstudio-detect")
        self.registry.health.start()
        self.metrics.start()
        if self.settings.config.metrics.enabled and self.loop_lag.interval > 0:
            self._spawn(self.loop_lag.run(), "mmstudio-loop-lag")
        self._spawn(self._flush_sessions_every(1.0), "mmstudio-sessions")
        if self.settings.config.videos.worker:
            self._spawn(self.run_jobs(), "mmstudio-jobs")  # jobs a restart left are resumed

    async def run_jobs(self) -> None:
        """Run jobs until cancelled (stop `worker` first: the leases go back): the table engine claims
        rows, the procrastinate engine runs the job ids its queue hands over."""
        if self.queue is None:
            await self.worker.run_forever()
        else:
            await self.queue.run_worker(self.worker.run_id, name=self.worker.owner)

    async def stop_jobs(self) -> None:
        """Take no more jobs; running jobs' leases go back (the next worker or start resumes them)."""
        if self.queue is not None:
            self.queue.stop()
        worker: JobWorker | None = getattr(self, "worker", None)
        if worker is not None:
            await worker.stop()

    async def _flush_sessions_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.registry.flush_sessions()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        await self.registry.health.stop()
        conversations: ChatService | None = getattr(self, "conversations", None)
        if conversations is not None:
            await conversations.close()  # running answers are stored `interrupted`, not lost
        compare: CompareService | None = getattr(self, "compare", None)
        if compare is not None:
            await compare.close()
        codegen: CodegenService | None = getattr(self, "codegen", None)
        if codegen is not None:
            await codegen.close()  # generations in flight are stored `interrupted`, text kept
        stories: StoryService | None = getattr(self, "stories", None)
        if stories is not None:
            await stories.close()  # scenes being written end `failed`, with a retry
        await self.stop_jobs()
        local_videos: LocalVideoEngines | None = getattr(self, "local_videos", None)
        if local_videos is not None:
            await local_videos.aclose()  # ComfyUI's progress sockets
        router: Router | None = getattr(self, "router", None)
        if router is not None:
            await router.drain()  # token counts of answers already sent
            await self.registry.flush_sessions()
        metrics: MetricsRecorder | None = getattr(self, "metrics", None)
        if metrics is not None:
            await metrics.close()  # writes everything buffered, before the engine is disposed
        limiter: RateLimiter | None = getattr(self, "limiter", None)
        if limiter is not None:
            await limiter.close()
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.aclose()
        if self.queue is not None:
            await self.queue.close()
        if self.chat_db is not None:
            await self.chat_db.close()
        if self.metrics_engine is not None:
            await self.metrics_engine.dispose()
        await self.engine.dispose()

    async def __aenter__(self) -> Studio:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- chat (the Python API: through the router, like every other way in) --------------------

    async def chat(
        self, model: str, messages: Sequence[Message], *, fallbacks: bool = True, **params: Any
    ) -> Routed:
        """Ask `model` (id, name or alias; empty for the default). `fallbacks=False` pins it.
        The result's `info` says which model answered, after which attempts."""
        request = ChatRequest(model=model, messages=tuple(messages), **params)
        return await self.router.chat(request, RouteOptions(fallbacks=fallbacks, route="python"))

    def stream_chat(
        self, model: str, messages: Sequence[Message], *, fallbacks: bool = True, **params: Any
    ) -> RoutedStream:
        """Iterate for `StreamEvent`s; `.info` is live (the model answering right now)."""
        request = ChatRequest(model=model, messages=tuple(messages), **params)
        return self.router.stream(request, RouteOptions(fallbacks=fallbacks, route="python"))
