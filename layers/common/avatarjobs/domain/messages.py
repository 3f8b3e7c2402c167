"""Bodies of the messages the functions pass each other on queues (dispatch, finalize, dead letters).

Every body has `job_id`; readers ignore fields they do not know, so a message written by a newer or older
version of a function is still read during a deploy.
"""

from pydantic import BaseModel


class JobMessage(BaseModel):
    job_id: str


class FinalizeMessage(JobMessage):
    """What finalize needs to copy the video and close the job without reading it first.

    Sent once the job is FINALIZING with the version that transition gave it. A message with only `job_id`
    (from before these fields, or for a job whose result names no URL yet) makes finalize read the job.
    """

    owner: str | None = None
    provider: str | None = None
    version: int | None = None
    video_url: str | None = None
