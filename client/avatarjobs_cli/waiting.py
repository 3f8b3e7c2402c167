"""Following a job until it ends: poll, report each state, stop at a terminal status or at the timeout."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from avatarjobs_cli.errors import ApiUnreachable, ExitCode
from avatarjobs_cli.schemas import TERMINAL_STATUSES, JobStatus, JobView

DEFAULT_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class WaitResult:
    job: JobView
    ended: bool  # False: the timeout came first

    @property
    def exit_code(self) -> ExitCode:
        if not self.ended:
            return ExitCode.WAIT_TIMED_OUT
        return ExitCode.OK if self.job["status"] == JobStatus.SUCCEEDED else ExitCode.JOB_NOT_SUCCEEDED


def has_ended(job: JobView) -> bool:
    return job["status"] in TERMINAL_STATUSES


def wait_for_job(
    fetch: Callable[[], JobView],
    *,
    timeout: float | None,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    on_update: Callable[[JobView], None],
    on_lost_contact: Callable[[ApiUnreachable], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    give_up_at = None if timeout is None else clock() + timeout
    job = fetch()  # the first poll fails loudly: a wrong URL or a stopped stack is not a blip
    while True:
        on_update(job)
        if has_ended(job):
            return WaitResult(job, ended=True)
        remaining = None if give_up_at is None else give_up_at - clock()
        if remaining is not None and remaining <= 0:
            return WaitResult(job, ended=False)
        sleep(interval if remaining is None else min(interval, remaining))
        try:
            job = fetch()
        except ApiUnreachable as error:
            # A network blip in a wait of many minutes: say so and poll again rather than give up on the job.
            on_lost_contact(error)
