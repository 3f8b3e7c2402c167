"""The `avatarjobs` command: typer commands over the API client. Presentation only; the work is elsewhere.

stdout carries what a script wants (a job id, a path, JSON, a table); progress, notes and errors go to stderr.
"""

import json
import mimetypes
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.filesize import decimal
from rich.live import Live
from rich.text import Text

from avatarjobs_cli import __version__
from avatarjobs_cli.api import ApiClient
from avatarjobs_cli.catalog import check_request, find_model
from avatarjobs_cli.display import (
    TransferProgress,
    duration,
    error_text,
    job_details,
    jobs_table,
    models_listing,
    status_line,
    status_text,
    voices_table,
)
from avatarjobs_cli.errors import ApiProblem, ApiUnreachable, CliError, UnexpectedResponse
from avatarjobs_cli.fields import parse_assignments
from avatarjobs_cli.media import LocalMedia
from avatarjobs_cli.schemas import JobStatus, JobView
from avatarjobs_cli.settings import API_KEY_ENV, BASE_URL_ENV, resolve_connection
from avatarjobs_cli.submission import job_request, media_values, stage_media
from avatarjobs_cli.transfers import Progress, TransferClient
from avatarjobs_cli.upload_memory import UploadMemory
from avatarjobs_cli.waiting import DEFAULT_INTERVAL_SECONDS, WaitResult, wait_for_job

app = typer.Typer(
    name="avatarjobs",
    no_args_is_help=True,
    add_completion=False,
    # A traceback with locals would print the API key held by the client.
    pretty_exceptions_show_locals=False,
)
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)  # messages unwrapped: URLs stay whole

BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        envvar=BASE_URL_ENV,
        help="The API's URL with its stage: the stack's ApiUrl output, or the local stack's URL.",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar=API_KEY_ENV, help="Sent as x-api-key; never printed.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead.")]
JobIdArgument = Annotated[str, typer.Argument(metavar="JOB_ID", help="The job's id, as submit printed it.")]
Timeout = Annotated[
    float | None,
    typer.Option(min=0, help="Stop waiting after this many seconds (exit 3); the job goes on.", show_default=False),
]
Interval = Annotated[float, typer.Option(min=0, help="Seconds between polls.")]


def _job_status(value: str) -> JobStatus:
    try:
        return JobStatus(value.upper())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(JobStatus)}.") from None


@contextmanager
def reported_errors() -> Iterator[None]:
    """Expected failures end the command with their message and exit code, never with a traceback."""
    try:
        yield
    except CliError as error:
        stderr.print(error_text(error))
        raise typer.Exit(int(error.exit_code)) from None


def version_callback(show: bool) -> None:
    if show:
        typer.echo(f"avatarjobs {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Order talking-avatar videos from an avatarjobs stack (local or deployed) and fetch them.

    Exit codes: 0 done (for wait: SUCCEEDED), 1 error, 2 the job FAILED, was CANCELED or TIMED_OUT,
    3 wait --timeout passed.
    """


@app.command()
def submit(
    *,
    provider: Annotated[str, typer.Option(help="fal or mirako (`avatarjobs models` lists them).")],
    model: Annotated[
        str, typer.Option(help="e.g. fal-ai/ai-avatar/multi-text, or talking-avatar for mirako (`avatarjobs models`).")
    ],
    image: Annotated[
        str | None, typer.Option(help="The face (image_url): a local file, uploaded, or an https:// URL.")
    ] = None,
    audio: Annotated[
        str | None, typer.Option(help="The speech (audio_url): a local file, uploaded, or an https:// URL.")
    ] = None,
    media: Annotated[
        list[str] | None,
        typer.Option(help="FIELD=FILE_OR_URL for any media field, e.g. first_audio_url=a.wav. Repeatable."),
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", "-f", help="NAME=TEXT, or NAME:=JSON for numbers and booleans (num_frames:=97). Repeatable."
        ),
    ] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="KEY=VALUE (or KEY:=JSON) of your own. Repeatable.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Repeat a submit with the key it printed: the same job comes back.", show_default=False),
    ] = None,
    deadline_seconds: Annotated[
        int | None, typer.Option(help="TIMED_OUT when not done this long after acceptance.", show_default=False)
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Then wait until the job ends (exit codes as wait).")] = False,
    timeout: Timeout = None,
    interval: Interval = DEFAULT_INTERVAL_SECONDS,
    json_output: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Order a video. The fields are checked against GET /models, then local files for media fields are uploaded;
    prints the job id."""
    with reported_errors():
        connection = resolve_connection(base_url, api_key)
        fields = parse_assignments(field or [], "--field")
        media_by_field = media_values(image, audio, parse_assignments(media or [], "--media"))
        own_metadata = parse_assignments(metadata or [], "--metadata")
        # Built before any upload, so that a field given twice costs no upload; media values are swapped after.
        request = job_request(
            provider=provider,
            model=model,
            fields=fields,
            media=media_by_field,
            metadata=own_metadata,
            deadline_seconds=deadline_seconds,
        )
        with ApiClient(connection) as api, TransferClient() as transfers:
            # Before any upload: a typo in a name or a value must not cost the upload of every file again.
            check_request(find_model(api.list_models(), provider, model), request)
            key = idempotency_key or str(uuid.uuid4())
            # Shown before the job is ordered: repeating the command with it after any failure cannot order twice.
            stderr.print(Text(f"Idempotency-Key: {key}"))
            with TransferProgress(stderr) as progress:

                def start_upload(item: LocalMedia) -> Progress:
                    return progress.start(f"{item.field} {item.path.name}", item.size)

                memory = UploadMemory.for_submission(connection, key)
                request |= stage_media(
                    media_by_field, api=api, transfers=transfers, memory=memory, start_upload=start_upload
                )
            try:
                created = api.create_job(request, key)
            except (ApiUnreachable, ApiProblem) as error:
                _add_submit_hint(error, key)
                raise
            job = created.job
            if created.replayed:
                stderr.print(Text(f"This Idempotency-Key already ordered job {job['job_id']}: nothing new ordered."))
            else:
                stderr.print(Text.assemble("Accepted job ", job["job_id"], " (", status_text(job["status"]), ")"))
            if not wait:
                _print_job_id_or_json(job, json_output)
                return
            if not json_output:
                typer.echo(job["job_id"])
            result = _follow(api, job["job_id"], timeout=timeout, interval=interval)
    _finish_wait(result, json_output)


@app.command()
def status(
    job_id: JobIdArgument, *, json_output: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """A job's status, timeline, error or video."""
    with reported_errors(), ApiClient(resolve_connection(base_url, api_key)) as api:
        job = api.get_job(job_id)
    if json_output:
        _print_json(job)
    else:
        stdout.print(job_details(job))


@app.command("list")
def list_jobs(
    *,
    status: Annotated[
        JobStatus | None,
        typer.Option(
            parser=_job_status,
            metavar="[" + "|".join(JobStatus) + "]",
            help="Only jobs in this status (any case).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Jobs per page.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Start at this next_cursor.", show_default=False)] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow next_cursor to the last page.")] = False,
    json_output: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Your jobs, newest first."""
    jobs: list[JobView] = []
    seen_cursors: set[str] = set()
    with reported_errors(), ApiClient(resolve_connection(base_url, api_key)) as api:
        while True:
            page = api.list_jobs(status=status.value if status else None, limit=limit, cursor=cursor)
            jobs.extend(page["items"])
            cursor = page["next_cursor"]
            if not all_pages or not cursor or cursor in seen_cursors:  # a repeated cursor would loop for ever
                break
            seen_cursors.add(cursor)
    if json_output:
        _print_json({"items": jobs, "next_cursor": cursor})
        return
    if jobs:
        stdout.print(jobs_table(jobs))
    else:
        stderr.print("No jobs.")
    if cursor and not all_pages:
        stderr.print(Text(f"More: avatarjobs list --cursor {cursor} (or --all)", style="dim"))


@app.command()
def cancel(
    job_id: JobIdArgument, *, json_output: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None
) -> None:
    """Cancel a job: at once if not yet submitted, else the provider is asked to stop it."""
    with reported_errors(), ApiClient(resolve_connection(base_url, api_key)) as api:
        job = api.cancel_job(job_id)
    if json_output:
        _print_json(job)
        return
    typer.echo(job["status"])
    if job["status"] == JobStatus.CANCEL_REQUESTED:
        stderr.print(Text(f"The provider is asked to stop it: `avatarjobs wait {job['job_id']}` to see it end."))


@app.command("wait")
def wait_command(
    job_id: JobIdArgument,
    *,
    timeout: Timeout = None,
    interval: Interval = DEFAULT_INTERVAL_SECONDS,
    json_output: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Follow a job until it ends. Exit 0 SUCCEEDED, 2 FAILED/CANCELED/TIMED_OUT, 3 --timeout passed."""
    with reported_errors(), ApiClient(resolve_connection(base_url, api_key)) as api:
        result = _follow(api, job_id, timeout=timeout, interval=interval)
    _finish_wait(result, json_output)


@app.command()
def download(
    job_id: JobIdArgument,
    *,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write, or a directory (an existing one, or one ending in /, made if missing); "
            "default <job id>.mp4.",
            show_default=False,
        ),
    ] = None,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Download a SUCCEEDED job's video, checking its size and SHA-256; prints the file's path."""
    with reported_errors():
        with ApiClient(resolve_connection(base_url, api_key)) as api:
            job = api.get_job(job_id)
        if job["status"] != JobStatus.SUCCEEDED:
            raise _not_downloadable(job)
        video = job.get("output")
        url = job.get("video_url")
        if not video or not url:
            raise UnexpectedResponse(f"Job {job['job_id']} SUCCEEDED but its answer has no output or video_url.")
        destination = _destination(output, job["job_id"], video["content_type"])
        with TransferClient() as transfers, TransferProgress(stderr) as progress:
            on_progress = progress.start(destination.name, video["size"])
            transfers.download(url, destination, size=video["size"], sha256=video["sha256"], on_progress=on_progress)
    stderr.print(Text(f"Saved {destination} ({decimal(video['size'])}, size and SHA-256 verified)."))
    typer.echo(str(destination))


@app.command()
def models(*, json_output: AsJson = False, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """The models submit takes, with their fields ('?': optional) and what their provider bills per."""
    with reported_errors(), ApiClient(resolve_connection(base_url, api_key)) as api:
        listed = api.list_models()
    if json_output:
        _print_json({"models": listed})
    else:
        stdout.print(models_listing(listed))


@app.command()
def voices(
    *,
    provider: Annotated[str, typer.Option(help="fal (its fixed voice names) or mirako (its voice profiles).")] = "fal",
    json_output: AsJson = False,
    base_url: BaseUrl = None,
    api_key: ApiKey = None,
) -> None:
    """The voices of a provider: what fal's voice fields or Mirako's voice_profile_id take."""
    with reported_errors(), ApiClient(resolve_connection(base_url, api_key)) as api:
        listing = api.list_voices(provider)
    if json_output:
        _print_json(listing)
    else:
        stdout.print(voices_table(listing))


# -- helpers ------------------------------------------------------------------------------------------------


def _follow(api: ApiClient, job_id: str, *, timeout: float | None, interval: float) -> WaitResult:
    """Poll until the job ends, drawn live on a terminal and as one line per status change elsewhere."""
    latest: list[JobView] = []
    started = datetime.now(UTC)

    def on_update(job: JobView) -> None:
        if not stderr.is_terminal and (not latest or latest[-1]["status"] != job["status"]):
            stderr.print(status_line(job))
        latest[:] = [job]

    def on_lost_contact(error: ApiUnreachable) -> None:
        stderr.print(Text(f"{error.message} Trying again.", style="yellow"))

    def render() -> RenderableType:
        now = datetime.now(UTC)
        waited = Text(f"waiting {duration((now - started).total_seconds())}, polling every {interval:g}s", style="dim")
        return Group(job_details(latest[-1], now), waited) if latest else waited

    def poll() -> WaitResult:
        return wait_for_job(
            lambda: api.get_job(job_id),
            timeout=timeout,
            interval=interval,
            on_update=on_update,
            on_lost_contact=on_lost_contact,
        )

    try:
        if not stderr.is_terminal:
            return poll()
        with Live(console=stderr, get_renderable=render, refresh_per_second=2):
            return poll()
    except KeyboardInterrupt:
        stderr.print(Text(f"Stopped waiting; the job goes on: avatarjobs wait {job_id}"))
        raise typer.Exit(130) from None


def _finish_wait(result: WaitResult, json_output: bool) -> None:
    job = result.job
    if json_output:
        _print_json(job)
    if not result.ended:
        stderr.print(Text(f"Stopped waiting: job {job['job_id']} is still {job['status']}; it goes on."))
    elif job["status"] == JobStatus.SUCCEEDED:
        stderr.print(Text(f"Job {job['job_id']} SUCCEEDED: avatarjobs download {job['job_id']}", style="green"))
    else:
        error = job.get("error")
        reason = f": {error['code']}: {error['message']}" if error else ""
        stderr.print(Text(f"Job {job['job_id']} ended {job['status']}{reason}", style="red"))
    raise typer.Exit(int(result.exit_code))


def _add_submit_hint(error: ApiUnreachable | ApiProblem, key: str) -> None:
    if isinstance(error, ApiProblem) and error.status == 409:
        error.hints.append("This Idempotency-Key went with another request: leave --idempotency-key out to order anew.")
    elif isinstance(error, ApiUnreachable) or error.status >= 500:
        error.hints.append(f"Repeat with --idempotency-key {key}: a job already made comes back, not a second one.")


def _not_downloadable(job: JobView) -> CliError:
    error = job.get("error")
    if error:
        return CliError(f"Job {job['job_id']} is {job['status']} ({error['code']}: {error['message']}): no video.")
    return CliError(
        f"Job {job['job_id']} is {job['status']}: only a SUCCEEDED job has a video.",
        f"avatarjobs wait {job['job_id']} follows it until it ends.",
    )


def _destination(output: str | None, job_id: str, content_type: str) -> Path:
    """Where the video goes, its folders made: before any byte moves, so a bad path fails before the progress bar."""
    extension = ".mp4" if content_type == "video/mp4" else mimetypes.guess_extension(content_type) or ""
    default_name = re.sub(r"[^A-Za-z0-9._-]", "_", job_id) + extension
    if output is None:
        return Path(default_name)
    # Path() drops a trailing separator, so "out/" is read as the folder it names before it becomes a Path.
    as_folder = output.endswith(("/", os.sep)) or Path(output).is_dir()
    destination = Path(output) / default_name if as_folder else Path(output)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(f"Cannot make the folder {destination.parent}: {error.strerror or error}.") from None
    if destination.is_dir():
        raise CliError(f"{destination} is a folder; name a file, or end the folder's name with /.")
    return destination


def _print_job_id_or_json(job: JobView, json_output: bool) -> None:
    if json_output:
        _print_json(job)
    else:
        typer.echo(job["job_id"])


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))
