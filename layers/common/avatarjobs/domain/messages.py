"""Bodies of the messages the functions pass each other on queues."""

from pydantic import BaseModel


class DispatchMessage(BaseModel):
    job_id: str
