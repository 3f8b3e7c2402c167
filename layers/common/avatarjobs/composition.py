"""The composition root: builds the use cases from settings and AWS adapters, once per process."""

from functools import cache

from avatarjobs.adapters import aws_clients
from avatarjobs.adapters.dispatch_queue import SqsDispatchQueue
from avatarjobs.adapters.jobs_table import DynamoJobsRepository
from avatarjobs.adapters.media_store import S3MediaStore
from avatarjobs.domain.jobs_service import JobsService
from avatarjobs.settings import Settings


@cache
def jobs_service() -> JobsService:
    settings = Settings.from_environment()
    return JobsService(
        jobs=DynamoJobsRepository(aws_clients.dynamodb(), settings.jobs_table_name, settings.idempotency_table_name),
        queue=SqsDispatchQueue(aws_clients.sqs(), settings.dispatch_queue_url),
        media=S3MediaStore(aws_clients.s3(), settings.inputs_bucket_name),
    )


def reset() -> None:
    """Forget every cached client and service (for tests that start a fresh mocked account)."""
    aws_clients.reset()
    jobs_service.cache_clear()
