"""How jobs and errors look in a terminal (rich renderables). Text from the API is never read as markup."""

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from rich import box
from rich.console import Console, Group, RenderableType
from rich.filesize import decimal
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from avatarjobs_cli.errors import CliError
from avatarjobs_cli.schemas import TERMINAL_STATUSES, JobStatus, JobView, ModelView, VoiceList

STATUS_STYLES: dict[str, str] = {
    JobStatus.ACCEPTED: "cyan",
    JobStatus.SUBMITTED: "cyan",
    JobStatus.RUNNING: "yellow",
    JobStatus.FINALIZING: "yellow",
    JobStatus.SUCCEEDED: "bold green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCEL_REQUESTED: "magenta",
    JobStatus.CANCELED: "magenta",
    JobStatus.TIMED_OUT: "bold red",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))  # StrEnum members hash as their values


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)  # the API's "2025-01-02T03:04:05.678Z"
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def time_in_status(job: JobView, now: datetime) -> str | None:
    entered = parse_time(job["timeline"].get(job["status"]) or job.get("updated_at"))
    return duration((now - entered).total_seconds()) if entered else None


def timeline_table(job: JobView, now: datetime) -> Table:
    """Each status the job has been in, when it entered it and how long it stayed."""
    table = Table("status", "entered", "for", box=None, pad_edge=False, header_style="dim")
    entries = sorted(
        ((moment, status) for status, text in job["timeline"].items() if (moment := parse_time(text))),
        key=lambda entry: entry[0],
    )
    for index, (moment, status) in enumerate(entries):
        if index + 1 < len(entries):
            stayed = duration((entries[index + 1][0] - moment).total_seconds())
        elif status == job["status"] and status not in TERMINAL_STATUSES:
            stayed = f"{duration((now - moment).total_seconds())} so far"
        else:
            stayed = ""  # the end, or a timeline that does not reach the current status
        table.add_row(status_text(status), Text(job["timeline"][status]), Text(stayed))
    return table


def job_details(job: JobView, now: datetime | None = None) -> RenderableType:
    now = now or datetime.now(UTC)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = status_text(job["status"])
    if (stayed := time_in_status(job, now)) and job["status"] not in TERMINAL_STATUSES:
        status.append(f"  for {stayed}", style="dim")
    grid.add_row("job", Text(job["job_id"]))
    grid.add_row("status", status)
    grid.add_row("model", Text(f"{job['provider']} {job['model']}"))
    grid.add_row("created", Text(job["created_at"]))
    grid.add_row("deadline", Text(job["deadline_at"]))
    if job.get("metadata"):
        grid.add_row("metadata", Text(json.dumps(job.get("metadata"), ensure_ascii=False)))
    if error := job.get("error"):
        grid.add_row("error", Text(f"{error['code']}: {error['message']}", style="red"))
    if output := job.get("output"):
        grid.add_row("video", Text(f"{decimal(output['size'])}, {output['content_type']}, sha256 {output['sha256']}"))
        grid.add_row("", Text(f"avatarjobs download {job['job_id']}", style="dim"))
    return Group(grid, Text("timeline", style="bold"), timeline_table(job, now))


def status_line(job: JobView, now: datetime | None = None) -> Text:
    """One line per change, for logs and pipes where a live display cannot redraw."""
    now = now or datetime.now(UTC)
    line = Text(f"{now.astimezone().strftime('%H:%M:%S')} {job['job_id']} ")
    line.append_text(status_text(job["status"]))
    if error := job.get("error"):
        line.append(f"  {error['code']}: {error['message']}", style="red")
    return line


def jobs_table(jobs: Iterable[JobView]) -> Table:
    # No provider column: the model names it (fal-ai/..., talking-avatar), and 80 columns are few.
    table = Table("job", "status", "model", "created (UTC)", header_style="bold", box=box.SIMPLE, pad_edge=False)
    for column in (table.columns[0], table.columns[1], table.columns[3]):
        column.no_wrap = True  # ids, statuses and times are useless broken in two
    table.columns[2].overflow = "fold"
    for job in jobs:
        created = parse_time(job["created_at"])
        table.add_row(
            Text(job["job_id"]),
            status_text(job["status"]),
            Text(job["model"]),
            Text(created.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if created else job["created_at"]),
        )
    return table


def models_listing(models: Iterable[ModelView]) -> Group:
    """Each model as a short block, not a table: its id and unit stay whole on an 80-column terminal or a pipe."""
    blocks: list[RenderableType] = []
    for model in models:
        fields = ", ".join(f"{field['name']}{'' if field['required'] else '?'}" for field in model["fields"])
        billing = model.get("billing")
        unit = (billing["unit"] or "not documented") if billing else "not documented"
        blocks.append(Text.assemble((model["id"], "bold"), f"  ({model['provider']})"))
        blocks.append(Text(f"  fields ('?': optional): {fields}"))
        blocks.append(Text(f"  billed per: {unit}\n"))
    return Group(*blocks)


def voices_table(listing: VoiceList) -> Table:
    table = Table("voice", "name", "languages", "kind", "status", header_style="bold", box=box.SIMPLE)
    table.columns[0].no_wrap = True
    for voice in listing["voices"]:
        kind = "premade" if voice.get("premade", True) else "custom"
        languages = ", ".join(voice.get("languages") or [])
        table.add_row(*(Text(value) for value in (voice["id"], voice.get("name") or "", languages, kind,
                                                   voice.get("status") or "")))  # fmt: skip
    return table


def error_text(error: CliError) -> Text:
    text = Text("Error: ", style="bold red")
    text.append("\n".join(error.lines()))
    for hint in error.hints:
        text.append(f"\n{hint}", style="dim")
    return text


class TransferProgress:
    """A progress bar per upload or download, started with the first transfer (none: nothing is drawn)."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),  # file names are not markup
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._started = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._started:
            self._progress.stop()

    def start(self, description: str, total: int) -> Callable[[int], None]:
        if not self._started:
            self._progress.start()
            self._started = True
        task = self._progress.add_task(description, total=total)
        return lambda moved: self._progress.advance(task, moved)
