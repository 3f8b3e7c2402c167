"""Messages that exhausted their tries fail their job, with the reason, so no job is silently stuck.

Both dead-letter queues (dispatch and finalize) carry `{"job_id"}`. The job's own status says which step
gave up: ACCEPTED means it never reached the provider, FINALIZING means its video could not be copied.
A job that moved on meanwhile is left alone.
"""

from avatarjobs.domain.job import JobError, JobStatus, isoformat, utc_now
from avatarjobs.domain.ports import JobsRepository
from avatarjobs.domain.state_machine import JobEvent
from avatarjobs.observability import logger

_STEP_THAT_GAVE_UP = {
    JobStatus.ACCEPTED: ("DISPATCH_FAILED", "could not submit to {provider} after {attempts} tries: {last}"),
    JobStatus.FINALIZING: ("FINALIZE_FAILED", "could not copy the video from {provider}: {last}"),
}


class DeadLetters:
    def __init__(self, jobs: JobsRepository) -> None:
        self._jobs = jobs

    def fail_stuck_job(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.status not in _STEP_THAT_GAVE_UP:
            return
        code, template = _STEP_THAT_GAVE_UP[job.status]
        last = job.last_error.message if job.last_error else "no reason was recorded"
        message = template.format(provider=job.provider, attempts=job.attempts, last=last)
        error = JobError(code=code, message=message, retryable=True)
        self._jobs.transition(job, JobEvent.FAILED, now=isoformat(utc_now()), changes={"error": error.model_dump()})
        logger.info("dead-lettered job failed", extra={"job_id": job_id, "code": code})
