"""Bodies of the messages the functions pass each other on queues (dispatch, finalize, dead letters)."""

from pydantic import BaseModel


class JobMessage(BaseModel):
    job_id: str
