"""The jobs HTTP API: routes of a Powertools resolver, each a call into the jobs service."""

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatarjobs.call_deadline import api_calls_end_in_time
from avatarjobs.composition import discovery, jobs_service
from avatarjobs.domain import limits
from avatarjobs.domain.ids import JOB_ID_PATTERN
from avatarjobs.domain.job import JobStatus
from avatarjobs.domain.ports import JobFilters
from avatarjobs.domain.requests import JobRequest
from avatarjobs.domain.views import CreateUploadsRequest, IsoDateTime, JobPage, JobView, UploadsView
from avatarjobs.http.cors import cross_origin
from avatarjobs.http.identity import caller
from avatarjobs.http.json_body import read_json_body
from avatarjobs.http.problems import problem_responses, refuse_oversized_body, register_problem_handlers
from avatarjobs.http.resources import ResourceResolver
from avatarjobs.http.response_headers import IDEMPOTENT_REPLAYED, LOCATION
from avatarjobs.observability import logger, metrics, tracer
from avatarjobs.providers.catalog import ModelList, VoiceList, VoiceProvider

app = ResourceResolver(enable_validation=True, json_body_deserializer=read_json_body)
register_problem_handlers(app)


def _json(status: HTTPStatus, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers)


@app.post(
    "/jobs",
    summary="Order a video",
    tags=["jobs"],
    operation_id="createJob",
    responses={
        202: {
            "description": "Accepted: follow Location",
            "headers": {"Location": LOCATION, "Idempotent-Replayed": IDEMPOTENT_REPLAYED},
            "links": {
                "GetJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/job_id"}},
                "CancelJob": {"operationId": "cancelJob", "parameters": {"job_id": "$response.body#/job_id"}},
            },
        },
        **problem_responses(400, 409, 413, 415, 422, 503),
    },
)
def create_job(
    request: Annotated[JobRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=limits.IDEMPOTENCY_KEY_MAX_CHARS,
               description="Same key and body: the same job again. Same key, other body: 409."),
    ] = None,
) -> Response[JobView]:  # fmt: skip
    created = jobs_service().create_job(caller(app), request, idempotency_key)
    if not created.replayed:
        metrics.add_metric(name="JobsAccepted", unit=MetricUnit.Count, value=1)
    location = f"{app.current_event.request_context.path.rstrip('/')}/{created.job.job_id}"
    headers = {"Location": location, "Idempotent-Replayed": str(created.replayed).lower()}
    return _json(HTTPStatus.ACCEPTED, JobView.of(created.job), headers)


@app.get(
    "/jobs/<job_id>",
    summary="A job's status, timeline and video URL",
    tags=["jobs"],
    operation_id="getJob",
    responses={200: {"description": "The job"}, **problem_responses(404, 422)},
)
def get_job(job_id: str) -> JobView:
    return jobs_service().describe_job(caller(app), job_id)


@app.get(
    "/jobs",
    summary="Your jobs, newest first",
    tags=["jobs"],
    operation_id="listJobs",
    responses={
        200: {
            "description": "A page of jobs",
            "links": {"NextPage": {"operationId": "listJobs", "parameters": {"cursor": "$response.body#/next_cursor"}}},
        },
        **problem_responses(400, 422),
    },
)
def list_jobs(
    *,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    model: Annotated[
        str | None,
        Query(min_length=1, max_length=limits.MODEL_FILTER_MAX_CHARS, description="Only jobs of this model (its id)"),
    ] = None,
    created_after: Annotated[
        IsoDateTime | None,
        Query(description="Only jobs created at or after this ISO 8601 date-time (with its offset, e.g. Z)"),
    ] = None,
    created_before: Annotated[
        IsoDateTime | None, Query(description="Only jobs created before this ISO 8601 date-time (with its offset)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=limits.LIST_LIMIT_MAX)] = limits.LIST_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(pattern=JOB_ID_PATTERN, description="next_cursor of the previous page")] = None,
) -> JobPage:
    filters = JobFilters(model=model, created_from=created_after, created_before=created_before)
    return jobs_service().list_jobs(caller(app), status=status, limit=limit, cursor=cursor, filters=filters)


@app.post(
    "/jobs/<job_id>/cancel",
    summary="Cancel a job",
    tags=["jobs"],
    operation_id="cancelJob",
    responses={
        200: {"description": "Canceled"},
        202: {"description": "Cancellation requested from the provider"},
        **problem_responses(404, 409, 422),
    },
)
def cancel_job(job_id: str) -> Response[JobView]:
    job = jobs_service().cancel_job(caller(app), job_id)
    pending = job.status == JobStatus.CANCEL_REQUESTED  # the provider still has to confirm
    return _json(HTTPStatus.ACCEPTED if pending else HTTPStatus.OK, JobView.of(job))


@app.post(
    "/uploads",
    summary="Presigned PUT URLs for your media",
    tags=["uploads"],
    operation_id="createUploads",
    responses={
        201: {
            "description": "Upload URLs",
            "links": {
                "JobFromUpload": {
                    "operationId": "createJob",
                    "description": "A job with the first file as its image, once that is uploaded (PUT to its url)",
                    "requestBody": {"image_url": "$response.body#/uploads/0/s3_uri"},
                }
            },
        },
        **problem_responses(400, 413, 415, 422),
    },
)
def create_uploads(request: Annotated[CreateUploadsRequest, Body()]) -> Response[UploadsView]:
    return _json(HTTPStatus.CREATED, jobs_service().create_uploads(caller(app), request))


@app.get(
    "/models",
    summary="The models: their fields with types, bounds and defaults, their voices, and how each is billed",
    tags=["discovery"],
    operation_id="listModels",
    responses={200: {"description": "Every model POST /jobs takes"}, **problem_responses()},
)
def list_models() -> ModelList:
    return discovery().models()


@app.get(
    "/voices",
    summary="The voices of a provider: fal's fixed names, or Mirako's voice profiles (voice_profile_id)",
    tags=["discovery"],
    operation_id="listVoices",
    responses={200: {"description": "The provider's voices"}, **problem_responses(422, 503)},
)
def list_voices(provider: Annotated[VoiceProvider, Query(description="fal or mirako")]) -> VoiceList:
    return discovery().voices(provider)


@cross_origin  # outermost: the refusals of oversized and non-JSON bodies are answers a page must read too
@refuse_oversized_body
@api_calls_end_in_time
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
