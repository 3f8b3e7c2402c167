"""The composition root: builds the use cases from settings and AWS adapters, once per process.

Each factory imports what it builds when it is first called, so a function's cold start pays only for its
own use cases (the API never imports httpx or the video copier; notify never imports a provider).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import _lru_cache_wrapper, cache
from typing import TYPE_CHECKING, Any, cast

from avatarjobs.settings import MissingSetting, ProviderSettings, Settings

if TYPE_CHECKING:
    from avatarjobs.adapters.input_urls import RoleSignedInputUrls
    from avatarjobs.adapters.job_queues import SqsRedelivery
    from avatarjobs.adapters.media_store import S3MediaStore
    from avatarjobs.domain.dead_letters import DeadLetters
    from avatarjobs.domain.dispatch_service import Dispatcher
    from avatarjobs.domain.finalize_service import Finalizer
    from avatarjobs.domain.intake import Intake
    from avatarjobs.domain.job_events import JobNotifier
    from avatarjobs.domain.jobs_service import JobsService
    from avatarjobs.domain.ports import JobQueue, JobsRepository, Provider, VoiceProfileSource
    from avatarjobs.domain.provider_outcomes import ProviderOutcomes
    from avatarjobs.domain.reconcile_service import Reconciler
    from avatarjobs.domain.video_copy import VideoCopier
    from avatarjobs.domain.webhooks import WebhookReceiver
    from avatarjobs.net.safe_fetch import SafeFetcher
    from avatarjobs.providers.catalog import Discovery

_FACTORIES: list[_lru_cache_wrapper[Any]] = []
# Adapters that override() puts in place of the real ones, by port name.
_overrides: dict[str, Any] = {}


def once_per_process[T](factory: Callable[[], T]) -> Callable[[], T]:
    """Build on first use and keep for warm invocations; reset() forgets them all."""
    cached = cache(factory)
    _FACTORIES.append(cached)
    return cached


@once_per_process
def settings() -> Settings:
    return Settings.from_environment()


@once_per_process
def provider_settings() -> ProviderSettings:
    return ProviderSettings.from_environment()


def _jobs_repository() -> JobsRepository:
    if "jobs" in _overrides:
        return _overrides["jobs"]  # type: ignore[no-any-return]
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.jobs_table import DynamoJobsRepository

    return DynamoJobsRepository(aws_clients.dynamodb(), settings().jobs_table_name, settings().idempotency_table_name)


def _media_store() -> S3MediaStore:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.media_store import S3MediaStore

    return S3MediaStore(aws_clients.s3(), settings().inputs_bucket_name)


@once_per_process
def jobs_service() -> JobsService:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.job_queues import SqsJobQueue
    from avatarjobs.domain.jobs_service import JobsService

    queue: JobQueue = _overrides.get("dispatch_queue") or SqsJobQueue(aws_clients.sqs(), settings().dispatch_queue_url)
    return JobsService(
        jobs=_jobs_repository(),
        queue=queue,
        media=_media_store(),
        providers=provider,
    )


@once_per_process
def discovery() -> Discovery:
    from avatarjobs.providers.catalog import Discovery

    # Mirako's plugin, with the key the dispatcher reads (MIRAKO_API_KEY, else MIRAKO_KEY_SECRET_ARN's secret).
    return Discovery(mirako=lambda: cast("VoiceProfileSource", provider("mirako")))


def provider(name: str) -> Provider:
    """The provider plugin of that name (providers/__init__.py's registry), built once per process: its key is
    read when a call first needs it, not before (a webhook's signature or token is checked without one), from a
    five-minute cache, so rotation is picked up. UnknownProvider for a name the registry does not have."""
    from avatarjobs.domain.providers import UnknownProvider
    from avatarjobs.providers import PLUGINS

    if name not in PLUGINS:
        raise UnknownProvider(name)
    return _provider_plugin(name)


@cache
def _provider_plugin(name: str) -> Provider:
    import importlib
    from functools import partial

    from avatarjobs.adapters.provider_keys import provider_key
    from avatarjobs.providers import PLUGINS

    def keys(direct_variable: str, secret_arn: str | None) -> Callable[[], str]:
        return partial(provider_key, direct_variable, secret_arn)

    return cast("Provider", importlib.import_module(PLUGINS[name]).plugin(provider_settings(), keys))


_FACTORIES.append(_provider_plugin)


@once_per_process
def dispatcher() -> Dispatcher:
    from avatarjobs.adapters.media_fetcher import SafeMediaFetcher
    from avatarjobs.domain.dispatch_service import Dispatcher
    from avatarjobs.domain.input_staging import InputStager

    return Dispatcher(
        jobs=_jobs_repository(),
        providers=provider,
        stager=InputStager(_media_store(), SafeMediaFetcher(_safe_fetcher()), _input_urls()),
        public_base_url=_required_setting(provider_settings().public_base_url, "PUBLIC_BASE_URL"),
        start_timeout_seconds=provider_settings().fal_start_timeout_seconds,
    )


def _input_urls() -> RoleSignedInputUrls:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.input_urls import RoleSignedInputUrls

    role_arn = _required_setting(provider_settings().input_reader_role_arn, "INPUT_READER_ROLE_ARN")
    return RoleSignedInputUrls(aws_clients.sts(), role_arn, settings().inputs_bucket_name)


@once_per_process
def provider_outcomes() -> ProviderOutcomes:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.job_queues import SqsJobQueue
    from avatarjobs.domain.provider_outcomes import ProviderOutcomes

    finalize_queue = SqsJobQueue(
        aws_clients.sqs(), _required_setting(settings().finalize_queue_url, "FINALIZE_QUEUE_URL")
    )
    return ProviderOutcomes(_jobs_repository(), finalize_queue)


@once_per_process
def webhook_receiver() -> WebhookReceiver:
    from avatarjobs.domain.webhooks import WebhookReceiver

    return WebhookReceiver(_jobs_repository(), provider, provider_outcomes())


@once_per_process
def _safe_fetcher() -> SafeFetcher:
    if "safe_fetcher" in _overrides:
        return _overrides["safe_fetcher"]  # type: ignore[no-any-return]
    from avatarjobs.net.safe_fetch import SafeFetcher

    return SafeFetcher(allow_loopback_http=provider_settings().allow_loopback_http)


@once_per_process
def finalizer() -> Finalizer:
    from avatarjobs.domain.finalize_service import Finalizer

    return Finalizer(_jobs_repository(), provider, video_copier(settings().outputs_bucket_name))


def video_copier(bucket: str) -> VideoCopier:
    """The finalizer's copy path into `bucket` (bench/finalize_copy.py measures this very one)."""
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.video_download import FetcherVideoDownloader
    from avatarjobs.adapters.video_store import MAX_PARTS, MIN_PART_SIZE, S3VideoStore
    from avatarjobs.domain.video_copy import DEFAULT_MAX_VIDEO_BYTES, VideoCopier

    config = provider_settings()
    part_size = config.finalize_part_bytes
    # Parts under S3's minimum pass only on the local stack (settings allow them there alone).
    min_part_size = min(part_size, MIN_PART_SIZE) if config.allow_loopback_http else MIN_PART_SIZE
    store = S3VideoStore(aws_clients.s3(), bucket, part_size=part_size, min_part_size=min_part_size)
    # Tiny local parts cap the video at S3's 10,000 parts; deployed, 10,000 parts of 8 MiB exceed the 2 GiB limit.
    max_bytes = min(DEFAULT_MAX_VIDEO_BYTES, part_size * MAX_PARTS)
    downloader = FetcherVideoDownloader(_safe_fetcher())
    return VideoCopier(downloader, store, media_hosts=config.media_hosts, max_bytes=max_bytes)


@once_per_process
def reconciler() -> Reconciler:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.job_queues import SqsJobQueue
    from avatarjobs.domain.reconcile_service import Reconciler

    return Reconciler(
        _jobs_repository(),
        provider,
        provider_outcomes(),
        dispatch_queue=SqsJobQueue(aws_clients.sqs(), settings().dispatch_queue_url),
        overdue_seconds=provider_settings().webhook_overdue_seconds,
        unconfirmed_submit_seconds=provider_settings().unconfirmed_submit_seconds,
    )


@once_per_process
def dispatch_redelivery() -> SqsRedelivery:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.job_queues import SqsRedelivery

    return SqsRedelivery(aws_clients.sqs(), settings().dispatch_queue_url)


@once_per_process
def finalize_redelivery() -> SqsRedelivery:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.job_queues import SqsRedelivery

    return SqsRedelivery(aws_clients.sqs(), _required_setting(settings().finalize_queue_url, "FINALIZE_QUEUE_URL"))


@once_per_process
def job_notifier() -> JobNotifier:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.event_bus import JobEventBus
    from avatarjobs.adapters.jobs_table import job_from_item
    from avatarjobs.adapters.subscribers import Subscribers
    from avatarjobs.domain.job_events import JobNotifier

    topic = _required_setting(settings().job_events_topic_arn, "JOB_EVENTS_TOPIC_ARN")
    bus = _required_setting(settings().job_event_bus_name, "JOB_EVENT_BUS_NAME")
    return JobNotifier(job_from_item, Subscribers(aws_clients.sns(), topic, JobEventBus(aws_clients.events(), bus)))


@once_per_process
def intake() -> Intake:
    from avatarjobs.adapters import aws_clients
    from avatarjobs.adapters.event_bus import JobEventBus
    from avatarjobs.adapters.intake_store import EventBridgeRejections, S3IntakeStore
    from avatarjobs.domain.intake import Intake

    bus = _required_setting(settings().job_event_bus_name, "JOB_EVENT_BUS_NAME")
    return Intake(
        jobs=jobs_service(),
        store=S3IntakeStore(aws_clients.s3()),
        rejections=EventBridgeRejections(JobEventBus(aws_clients.events(), bus)),
        inputs_bucket=settings().inputs_bucket_name,
    )


@once_per_process
def dead_letters() -> DeadLetters:
    from avatarjobs.domain.dead_letters import DeadLetters

    return DeadLetters(_jobs_repository())


def _required_setting(value: str | None, name: str) -> str:
    if not value:
        raise MissingSetting(name)
    return value


def jobs_repository() -> JobsRepository:
    """The repository the use cases of this process are built with (tests seed and read jobs through it)."""
    return _jobs_repository()


def safe_fetcher() -> SafeFetcher:
    """The fetcher input staging and the video copy are built with."""
    return _safe_fetcher()


@contextmanager
def override(
    *,
    jobs: JobsRepository | None = None,
    dispatch_queue: JobQueue | None = None,
    safe_fetcher: SafeFetcher | None = None,
) -> Iterator[None]:
    """Builds the use cases with the given adapters in place of the real ones until the block ends (for tests:
    a fake repository, a queue that is down, a fetcher with its own resolver).

    The services built before or inside the block are forgotten on entry and on exit, so none keeps an adapter
    of the other side; the boto3 clients are kept. Blocks may nest: the inner one wins for the ports it names.
    """
    given = {"jobs": jobs, "dispatch_queue": dispatch_queue, "safe_fetcher": safe_fetcher}
    previous = dict(_overrides)
    _overrides.update({port: adapter for port, adapter in given.items() if adapter is not None})
    _forget_services()
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(previous)
        _forget_services()


def _forget_services() -> None:
    for factory in _FACTORIES:
        factory.cache_clear()


def reset() -> None:
    """Forget every cached client and service (for tests that start a fresh mocked account)."""
    from avatarjobs.adapters import aws_clients
    from avatarjobs.providers import http as provider_http

    aws_clients.reset()
    provider_http.reset_clients()
    _forget_services()
