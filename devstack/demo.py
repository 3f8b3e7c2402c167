"""`make demo`: the whole pipeline on this machine, driven as a user would drive it.

Starts the local stack with the provider emulators, orders a two-speaker fal video and a Mirako video with
the bundled face through the `avatarjobs` CLI (uploads, progress, download with its SHA-256 checked),
copies both MP4s into ./out/, and shows what a subscriber got on an SQS queue behind the topic and a rule
on the bus. Exit code 0 only when both videos arrived and both jobs were told on both channels.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from devstack.media import probe
from devstack.moto_server import local_session
from devstack.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parent.parent
FACE = REPO_ROOT / "devstack" / "assets" / "face.png"
OUT = Path("out")
JOB_TIMEOUT_SECONDS = 180
NOTIFICATION_TIMEOUT_SECONDS = 60

console = Console(stderr=True)


@dataclass(frozen=True)
class DemoJob:
    name: str
    arguments: list[str]


JOBS = [
    DemoJob(
        "fal-multi-text",
        [
            "--provider", "fal", "--model", "fal-ai/ai-avatar/multi-text", "--image", str(FACE),
            "--field", "first_text_input=Hello! Did the pipeline make this video?",
            "--field", "second_text_input=It did, from one picture and two lines of text.",
            "--field", "prompt=Two people talking in a bright studio.",
            "--metadata", "demo=fal",
        ],
    ),
    DemoJob(
        "mirako-talking-avatar",
        [
            "--provider", "mirako", "--model", "talking-avatar", "--image", str(FACE),
            "--field", "text=Hello from the Mirako emulator. This face is speaking synthesized words.",
            "--field", "voice_profile_id=demo-voice",
            "--metadata", "demo=mirako",
        ],
    ),
]  # fmt: skip


class Subscribers:
    """An SQS queue subscribed to the topic and one behind a rule on the bus, as a subscriber would set up."""

    def __init__(self, local: LocalStack) -> None:
        session = local_session()
        self._sqs = session.client("sqs", endpoint_url=local.endpoint_url)
        topic = local.stack.refs["JobEventsTopic"]
        bus = local.stack.refs["JobEventBus"]
        self.topic_queue = self._queue("demo-topic-subscriber")
        session.client("sns", endpoint_url=local.endpoint_url).subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=self._arn(self.topic_queue)
        )
        self.bus_queue = self._queue("demo-bus-subscriber")
        events = session.client("events", endpoint_url=local.endpoint_url)
        events.put_rule(Name="demo-subscriber", EventBusName=bus, EventPattern=json.dumps({"source": ["avatarjobs"]}))
        events.put_targets(
            Rule="demo-subscriber", EventBusName=bus, Targets=[{"Id": "demo", "Arn": self._arn(self.bus_queue)}]
        )

    def _queue(self, name: str) -> str:
        url: str = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        return url

    def _arn(self, url: str) -> str:
        arn: str = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return arn

    def receive(self, queue: str) -> list[dict[str, Any]]:
        messages = self._sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        bodies = []
        for message in messages.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            self._sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return bodies


def cli(local: LocalStack, *arguments: str) -> str:
    """Runs the avatarjobs CLI against the local stack; its progress shows on this terminal (stderr)."""
    environment = {**os.environ, "AVATARJOBS_BASE_URL": local.api_url, "AVATARJOBS_API_KEY": local.api_key}
    completed = subprocess.run(  # noqa: S603 - our own CLI, arguments we wrote
        [sys.executable, "-m", "avatarjobs_cli", *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=JOB_TIMEOUT_SECONDS + 30,
    )
    if completed.returncode != 0:
        raise DemoFailed(f"`avatarjobs {arguments[0]}` exited {completed.returncode}")
    return completed.stdout.strip()


class DemoFailed(Exception):
    pass


def notifications(subscribers: Subscribers, job_ids: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the two subscribers received, until both jobs were told on both channels (or the time is up)."""
    topic: list[dict[str, Any]] = []
    bus: list[dict[str, Any]] = []
    deadline = time.monotonic() + NOTIFICATION_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        topic += [json.loads(envelope["Message"]) for envelope in subscribers.receive(subscribers.topic_queue)]
        bus += [event["detail"] for event in subscribers.receive(subscribers.bus_queue)]
        if {event["job_id"] for event in topic} >= job_ids and {event["job_id"] for event in bus} >= job_ids:
            break
    return topic, bus


def run() -> bool:
    OUT.mkdir(exist_ok=True)
    console.rule("avatarjobs demo: starting the local stack (moto, emulators, one process per function)")
    with LocalStack(emulators=True, schedule_seconds=5, log_dir=OUT / "logs") as local:
        subscribers = Subscribers(local)
        console.print(f"API {local.api_url}  (logs in {OUT / 'logs'})")
        job_ids = {job.name: cli(local, "submit", *job.arguments) for job in JOBS}
        for name, job_id in job_ids.items():
            console.rule(f"{name}: {job_id}")
            cli(local, "wait", job_id, "--timeout", str(JOB_TIMEOUT_SECONDS))
            cli(local, "download", job_id, "-o", str(OUT / f"{name}.mp4"))
        videos = Table("video", "video stream", "audio stream", "duration", "bytes", title="videos in ./out/")
        all_playable = True
        for name in job_ids:
            path = OUT / f"{name}.mp4"
            found = probe(path.read_bytes())
            all_playable &= found.has_video and found.has_audio and found.duration_seconds > 0
            videos.add_row(str(path), str(found.has_video), str(found.has_audio), f"{found.duration_seconds:.2f} s",
                           str(path.stat().st_size))  # fmt: skip
        console.print(videos)
        topic, bus = notifications(subscribers, set(job_ids.values()))
        console.print(Panel(json.dumps(topic, indent=2), title=f"SNS topic subscriber: {len(topic)} message(s)"))
        console.print(Panel(json.dumps(bus, indent=2), title=f"EventBridge rule subscriber: {len(bus)} event(s)"))
        told = {event["job_id"] for event in topic} & {event["job_id"] for event in bus}
    console.rule("the local stack is stopped")
    succeeded = all_playable and told >= set(job_ids.values())
    console.print("[green]demo passed[/green]" if succeeded else "[red]demo failed[/red]")
    return succeeded


def main() -> int:
    try:
        return 0 if run() else 1
    except DemoFailed as failure:
        console.print(f"[red]demo failed: {failure}[/red]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
