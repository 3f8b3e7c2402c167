"""The failure suite: 200 jobs on the local stack with every fault at once, and what must hold all the same.

Injected together (devstack/faults.py describes each knob):
- every webhook is delivered 3 times (webhook_copies) and 10 % of the runs send none (drop_webhook_fraction):
  the reconciler finds those by polling the provider (WebhookOverdueSeconds 10, a tick every 2 s);
- 10 % of the jobs have their first submit refused, half with 429 (Retry-After 1 s), half with 503;
- 5 % of the submits are accepted but their answer is lost (docs/decisions.md, "Provider failures"): half have
  the connection closed before the answer, half get a gateway's HTML 502 (Mirako) or 504 (fal) page. None may
  be ordered again: each waits for its webhook and adopts it, or, if its webhook is among the lost ones, fails
  as SUBMISSION_UNCONFIRMED once UnconfirmedSubmitSeconds (30 s here) have passed. So that this happens at least
  once whatever the shares pick, the first job is ordered alone with both its submit answer and its webhook
  lost (the counters `submit_answer_drops` and `drop_webhooks`), and the others once it is submitted;
- 2 % of the fal runs end COMPLETED with the app's own 500 (fal does not retry it): FAILED with fal's message;
- 5 % of the finalizer's S3 uploads fail once with 500 InternalError (s3_upload_failures);
- the first fal video download stalls half way and the finalizer is killed during it: the local stack starts a
  new worker, and the message comes back after the finalize queue's visibility timeout (shortened to 8 s);
- a few permanent failures, so that FAILED and a dead-letter queue are exercised too: the first three fal runs
  and the first Mirako run fail (fail_runs), and one video of each provider never downloads (media_error_runs:
  503 on every try, so the finalize message goes to its dead-letter queue after 3 tries and the job FAILS).

The run happens once (the `suite` fixture); each test checks one invariant on what it observed. Jobs are
ordered through the HTTP API, the outcome is read from the API, the emulators' request logs, moto (S3, the
subscribers' queues, the dead-letter queues) and the local stack's fault record.
"""

import json
import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from devstack.cloudformation import REGION
from devstack.media import SAMPLE_FACE, speak
from devstack.moto_server import local_session
from devstack.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

FAL_JOBS, MIRAKO_JOBS = 150, 50
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT"})
ALL_DONE_WITHIN_SECONDS = 300
NOTIFIED_WITHIN_SECONDS = 60
SETTLE_SECONDS = 60
SUBMITTERS = 6

SHARED_FAULTS: dict[str, Any] = {
    "instant": True,  # one shared sample video per emulator: the suite is about the pipeline, not ffmpeg
    "workers": 8,
    "fault_seed": "failure-suite",
    "webhook_copies": 3,
    "drop_webhook_fraction": 0.10,
    "rate_limit_submit_fraction": 0.05,
    "server_error_submit_fraction": 0.05,
    "retry_after_seconds": 1,
    "submit_answer_drop_fraction": 0.025,
    "submit_gateway_error_fraction": 0.025,
}
# The first fal job, ordered alone: its submit answer and its webhook are both lost.
UNCONFIRMED_FIRST_JOB: dict[str, Any] = {"submit_answer_drops": 1, "drop_webhooks": 1}
FAL_FAULTS: dict[str, Any] = {
    **SHARED_FAULTS,
    **UNCONFIRMED_FIRST_JOB,
    "fail_runs": 3,
    "media_error_runs": 1,
    "slow_media": 1,
    "gateway_error_status": 504,
    "app_error_fraction": 0.02,
}
MIRAKO_FAULTS: dict[str, Any] = {**SHARED_FAULTS, "fail_runs": 1, "media_error_runs": 1, "gateway_error_status": 502}
# What an injected run failure is coded as: fal's model error is a 422 (the input refused), Mirako's a FAILED task.
INJECTED_FAILURE_CODES = {"fal": "PROVIDER_INVALID_REQUEST", "mirako": "GENERATION_FAILED"}
UNCONFIRMED_SUBMIT_SECONDS = 30
S3_UPLOAD_FAILURE_RATE = 0.05
SLOW_MEDIA_SECONDS = 25.0  # under the finalizer's 30 s read timeout: the copy is killed, it does not time out
FINALIZE_VISIBILITY_SECONDS = 8
WEBHOOK_OVERDUE_SECONDS = 10
SCHEDULE_SECONDS = 2.0
# Each dead-letter queue of the template (checked below): the consumed ones must end empty, the others stay so.
DEAD_LETTER_QUEUES = (
    "DispatchDeadLetterQueue",
    "FinalizeDeadLetterQueue",
    "NotifyFailureQueue",
    "IngestDeadLetterQueue",
)
WORK_QUEUES = ("DispatchQueue", "FinalizeQueue")
_JOB_IN_WEBHOOK_URL = re.compile(r"/webhooks/(?:fal|mirako)/([0-9A-Z]{26})$")
_JOB_IN_VIDEO_KEY = re.compile(r"videos/([0-9A-Z]{26})\.mp4")


def share_bounds(count: int, fraction: float) -> tuple[int, int]:
    """How many of `count` keys an EvenSelection of `fraction` picks: between these two."""
    return math.floor(count * fraction), math.ceil(count * fraction)


@dataclass
class Kill:
    """The finalizer crash: which worker, while it downloaded which video."""

    pid: int
    file_name: str
    request_id: str


@dataclass
class Suite:
    local: LocalStack
    jobs: dict[str, dict[str, Any]]  # job id -> its final view (GET /jobs)
    providers: dict[str, str]  # job id -> fal | mirako
    record: dict[str, dict[str, Any]]  # provider -> GET /_emulator/requests at the end
    faults: list[dict[str, Any]]  # the local stack's fault record (worker kills, S3 failures)
    kill: Kill | None
    topic_events: list[dict[str, Any]]
    bus_events: list[dict[str, Any]]
    videos: dict[str, int]  # object key under videos/ -> size
    dead_letter_depths: dict[str, int]  # queue -> messages left (visible or in flight)
    work_queue_depths: dict[str, int]
    dead_lettered: dict[str, str]  # job id -> code, what the dead-letter consumer failed (its log)
    timings: dict[str, float]  # seconds each phase took
    runs_by_job: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for provider, record in self.record.items():
            for run in record["requests"]:
                job_id = job_of_webhook(run["webhook_url"])
                self.runs_by_job.setdefault(job_id, []).append({**run, "provider": provider})

    def expected_status(self, job_id: str) -> tuple[str, str | None]:
        """What the job must end as (and its error code), from what its provider was told to do to it."""
        runs = self.runs_by_job.get(job_id, [])
        assert len(runs) == 1, f"{job_id} was submitted {len(runs)} times"
        [run] = runs
        if run["submit_answer"] != "answered" and run["webhook_dropped"]:
            return "FAILED", "SUBMISSION_UNCONFIRMED"  # nothing ever told us the provider had it
        if run["failure_injected"]:
            return "FAILED", INJECTED_FAILURE_CODES[run["provider"]]
        if run.get("app_error"):
            return "FAILED", "GENERATION_FAILED"
        if run["media_errors"]:
            return "FAILED", "FINALIZE_FAILED"
        return "SUCCEEDED", None


def job_of_webhook(url: str) -> str:
    match = _JOB_IN_WEBHOOK_URL.search(url or "")
    assert match, f"not one of our webhook URLs: {url!r}"
    return match[1]


# --- running it ----------------------------------------------------------------------------------------------


class Subscribers:
    """A queue subscribed to the topic and a rule with a queue target on the bus: what subscribers receive."""

    def __init__(self, local: LocalStack) -> None:
        session = local_session()
        self.sqs: SQSClient = session.client("sqs", region_name=REGION, endpoint_url=local.endpoint_url)
        sns = session.client("sns", region_name=REGION, endpoint_url=local.endpoint_url)
        events = session.client("events", region_name=REGION, endpoint_url=local.endpoint_url)
        self.topic_queue, topic_queue_arn = self._queue("failure-suite-topic-subscriber")
        sns.subscribe(TopicArn=local.stack.refs["JobEventsTopic"], Protocol="sqs", Endpoint=topic_queue_arn)
        self.bus_queue, bus_queue_arn = self._queue("failure-suite-bus-subscriber")
        bus = local.stack.refs["JobEventBus"]
        pattern = json.dumps({"source": ["avatarjobs"], "detail-type": [{"prefix": "Avatar Video Job"}]})
        events.put_rule(Name="failure-suite-job-events", EventBusName=bus, EventPattern=pattern)
        events.put_targets(
            Rule="failure-suite-job-events", EventBusName=bus, Targets=[{"Id": "subscriber", "Arn": bus_queue_arn}]
        )
        self.topic_events: list[dict[str, Any]] = []
        self.bus_events: list[dict[str, Any]] = []

    def _queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def drain(self) -> None:
        for body in self._receive_all(self.topic_queue):
            self.topic_events.append(json.loads(json.loads(body)["Message"]))
        for body in self._receive_all(self.bus_queue):
            self.bus_events.append(json.loads(body)["detail"])

    def _receive_all(self, queue_url: str) -> list[str]:
        bodies: list[str] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return bodies
            bodies += [message["Body"] for message in messages]
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )


class FinalizeKiller(threading.Thread):
    """Kills the finalizer's worker once, while it is in the middle of the slow video download."""

    def __init__(self, local: LocalStack, fal_url: str) -> None:
        super().__init__(name="finalize-killer", daemon=True)
        self._local = local
        self._fal_url = fal_url
        self.stopping = threading.Event()
        self.kill: Kill | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(0.25):
                downloads = httpx.get(f"{self._fal_url}/_emulator/requests", timeout=10).json()["media_downloads"]
                stalled = [download for download in downloads if download["slow"] and download["outcome"] == "stalled"]
                if stalled:
                    pid = self._local.kill_worker("FinalizeFunction")
                    self.kill = Kill(pid, stalled[0]["file_name"], stalled[0]["request_id"])
                    return
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error


def _inputs(api: httpx.Client) -> tuple[str, str]:
    """The face and the speech, uploaded once through POST /uploads; every job refers to them (s3://)."""
    files = {
        "face.png": ("image/png", SAMPLE_FACE.read_bytes()),
        "speech.wav": ("audio/wav", speak("Hello from the failure suite.", "Aria")),
    }
    answer = api.post(
        "/uploads",
        json={
            "files": [{"name": name, "content_type": kind, "size": len(data)} for name, (kind, data) in files.items()]
        },
    )
    assert answer.status_code == 201, answer.text
    uris = {}
    for upload in answer.json()["uploads"]:
        data = files[upload["name"]][1]
        put = httpx.put(upload["url"], content=data, headers=upload["headers"], timeout=30)
        assert put.status_code == 200, put.text
        uris[upload["name"]] = upload["s3_uri"]
    return uris["face.png"], uris["speech.wav"]


def _order(api: httpx.Client, index: int, body: dict[str, Any]) -> str:
    """POST /jobs, retried with the same Idempotency-Key if the answer is lost or the gateway gives up."""
    for _ in range(3):
        try:
            answer = api.post("/jobs", json=body, headers={"Idempotency-Key": f"failure-suite-{index}"})
        except httpx.TransportError:
            continue
        if answer.status_code < 500:
            assert answer.status_code == 202, answer.text
            job_id: str = answer.json()["job_id"]
            return job_id
    raise AssertionError(f"job {index} could not be ordered")


def _wait_until_submitted(api: httpx.Client, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while (status := api.get(f"/jobs/{job_id}").json()["status"]) == "ACCEPTED":
        assert time.monotonic() < deadline, f"job {job_id} was never submitted"
        time.sleep(0.2)
    assert status == "SUBMITTED", status


def _list_jobs(api: httpx.Client) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        answer = api.get("/jobs", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        jobs |= {job["job_id"]: job for job in page["items"]}
        cursor = page.get("next_cursor")
        if not cursor:
            return jobs


def _wait_until_all_terminal(api: httpx.Client, job_ids: list[str], killer: FinalizeKiller) -> dict[str, Any]:
    deadline = time.monotonic() + ALL_DONE_WITHIN_SECONDS
    while True:
        jobs = _list_jobs(api)
        stuck = {job_id: jobs.get(job_id) for job_id in job_ids if jobs.get(job_id, {}).get("status") not in TERMINAL}
        if not stuck:
            return jobs
        if time.monotonic() > deadline:
            lines = [
                f"  {job_id}: {job['status']} (timeline {job['timeline']}, error {job['error']})"
                if job
                else f"  {job_id}: not listed"
                for job_id, job in sorted(stuck.items())
            ]
            pytest.fail(
                f"{len(stuck)} of {len(job_ids)} jobs not terminal after {ALL_DONE_WITHIN_SECONDS} s "
                f"(finalizer killed: {killer.kill}):\n" + "\n".join(lines)
            )
        time.sleep(2)


def _settled_records(emulators: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The emulators' request records once every run has sent all its webhook copies (or SETTLE_SECONDS)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        records = {name: httpx.get(f"{url}/_emulator/requests", timeout=30).json() for name, url in emulators.items()}
        copies = SHARED_FAULTS["webhook_copies"]
        sending = [
            run
            for record in records.values()
            for run in record["requests"]
            if not run["webhook_dropped"]
            and not any(delivery["copy"] == copies - 1 for delivery in run["webhook_deliveries"])
        ]
        if not sending or time.monotonic() > deadline:
            time.sleep(SCHEDULE_SECONDS * 2)  # a reconciler tick after the last copy
            return records
        time.sleep(1)


def _depth(sqs: "SQSClient", queue_url: str) -> int:
    """Messages in the queue, visible or in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", "0")) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
    )


def _dead_lettered(local: LocalStack) -> dict[str, str]:
    """What the dead-letter consumer failed, from its log (CloudWatch Logs, deployed): job id -> code."""
    failed: dict[str, str] = {}
    for line in (local.log_dir / "DeadLetterFunction.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and '"dead-lettered job failed"' in line:
            entry = json.loads(line)
            failed[entry["job_id"]] = entry["code"]
    return failed


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(phase: str) -> None:
        nonlocal clock
        timings[phase] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    with LocalStack(
        emulators=True,
        schedule_seconds=SCHEDULE_SECONDS,
        parameters={
            "WebhookOverdueSeconds": str(WEBHOOK_OVERDUE_SECONDS),
            "UnconfirmedSubmitSeconds": str(UNCONFIRMED_SUBMIT_SECONDS),
        },
        visibility_timeouts={"FinalizeQueue": FINALIZE_VISIBILITY_SECONDS},
        s3_upload_failures={"FinalizeFunction": S3_UPLOAD_FAILURE_RATE},
        log_dir=tmp_path_factory.mktemp("failure-suite-logs"),
    ) as local:
        fal_url, mirako_url = local.provider_urls["FAL_QUEUE_BASE_URL"], local.provider_urls["MIRAKO_BASE_URL"]
        assert fal_url
        assert mirako_url
        settings = {fal_url: {**FAL_FAULTS, "slow_media_seconds": SLOW_MEDIA_SECONDS}, mirako_url: MIRAKO_FAULTS}
        for url, values in settings.items():
            httpx.post(f"{url}/_emulator/settings", json=values, timeout=10).raise_for_status()
        subscribers = Subscribers(local)
        killer = FinalizeKiller(local, fal_url)
        killer.start()
        lap("start")
        with httpx.Client(base_url=local.api_url, headers={"x-api-key": local.api_key}, timeout=60) as api:
            face, speech = _inputs(api)
            media = {"image_url": face, "audio_url": speech}
            fal_body = {"provider": "fal", "model": "fal-ai/ai-avatar", **media, "prompt": "A person talking."}
            mirako_body = {"provider": "mirako", "model": "talking-avatar", **media}
            # Interleaved, so both providers are busy from the start: every fourth job is Mirako's.
            bodies = [mirako_body if index % 4 == 3 else fal_body for index in range(FAL_JOBS + MIRAKO_JOBS)]
            assert Counter(body["provider"] for body in bodies) == {"fal": FAL_JOBS, "mirako": MIRAKO_JOBS}
            assert bodies[0]["provider"] == "fal"
            first = _order(api, 0, {**bodies[0], "metadata": {"index": 0}})
            _wait_until_submitted(api, first)  # it alone takes UNCONFIRMED_FIRST_JOB's counters
            with ThreadPoolExecutor(SUBMITTERS) as pool:
                orders = [
                    pool.submit(_order, api, index, {**body, "metadata": {"index": index}})
                    for index, body in enumerate(bodies)
                    if index > 0
                ]
                job_ids = [first, *(order.result() for order in orders)]
            assert len(set(job_ids)) == len(bodies)
            lap("order")
            jobs = _wait_until_all_terminal(api, job_ids, killer)
            lap("all_terminal")
            killer.stopping.set()
            killer.join()
            if killer.error is not None:
                raise killer.error
            # Subscribers are told through the table's stream: give it time to deliver the last ones.
            notified_by = time.monotonic() + NOTIFIED_WITHIN_SECONDS
            while True:
                subscribers.drain()
                told = {event["job_id"] for event in subscribers.topic_events} & {
                    event["job_id"] for event in subscribers.bus_events
                }
                if told >= set(job_ids) or time.monotonic() > notified_by:
                    break
                time.sleep(1)
            # Until the emulators have sent every webhook copy: a late duplicate (or reconciler tick) shows now.
            records = _settled_records({"fal": fal_url, "mirako": mirako_url})
            subscribers.drain()
            jobs = _list_jobs(api)
            lap("settle")
        sqs = subscribers.sqs
        s3 = local_session().client("s3", region_name=REGION, endpoint_url=local.endpoint_url)
        listing = s3.list_objects_v2(Bucket=local.stack.refs["OutputsBucket"], Prefix="videos/")
        assert not listing.get("IsTruncated")
        yield Suite(
            local=local,
            jobs={job_id: jobs[job_id] for job_id in job_ids},
            providers={job_id: body["provider"] for job_id, body in zip(job_ids, bodies, strict=True)},
            record=records,
            faults=local.injected_faults(),
            kill=killer.kill,
            topic_events=subscribers.topic_events,
            bus_events=subscribers.bus_events,
            videos={item["Key"]: item["Size"] for item in listing.get("Contents", [])},
            dead_letter_depths={name: _depth(sqs, local.stack.refs[name]) for name in DEAD_LETTER_QUEUES},
            work_queue_depths={name: _depth(sqs, local.stack.refs[name]) for name in WORK_QUEUES},
            dead_lettered=_dead_lettered(local),
            timings=timings,
        )


# --- the invariants ------------------------------------------------------------------------------------------


def test_every_job_ends_in_the_state_it_should(suite: Suite) -> None:
    wrong = {}
    for job_id, job in suite.jobs.items():
        status, code = suite.expected_status(job_id)
        actual_code = job["error"]["code"] if job["error"] else None
        if (job["status"], actual_code) != (status, code):
            wrong[job_id] = f"expected {status} {code or ''}, got {job['status']} {job['error']}"
    assert not wrong, wrong
    counts = Counter(job["status"] for job in suite.jobs.values())
    expected = Counter(suite.expected_status(job_id)[0] for job_id in suite.jobs)
    assert counts == expected, counts
    # At least fail_runs (3 at fal, 1 at Mirako), media_error_runs (1 each) and fal's app errors (2 % of 150).
    assert counts["FAILED"] >= 6 + share_bounds(FAL_JOBS, FAL_FAULTS["app_error_fraction"])[0], counts
    for job_id, job in suite.jobs.items():
        if job["status"] == "FAILED":
            assert job["error"]["message"], job_id  # the reason is told
        if job["status"] == "SUCCEEDED":
            assert job["output"]["key"] == f"videos/{job_id}.mp4"


def test_no_job_was_submitted_to_its_provider_twice(suite: Suite) -> None:
    accepted = Counter(
        job_of_webhook(run["webhook_url"]) for record in suite.record.values() for run in record["requests"]
    )
    assert set(accepted) == set(suite.jobs)
    twice = {job_id: count for job_id, count in accepted.items() if count != 1}
    assert not twice, twice
    for job_id, [run] in suite.runs_by_job.items():
        assert run["provider"] == suite.providers[job_id]


def test_one_video_per_succeeded_job_and_none_for_the_others(suite: Suite) -> None:
    succeeded = {job_id: job for job_id, job in suite.jobs.items() if job["status"] == "SUCCEEDED"}
    assert set(suite.videos) == {f"videos/{job_id}.mp4" for job_id in succeeded}
    for job_id, job in succeeded.items():
        assert suite.videos[f"videos/{job_id}.mp4"] == job["output"]["size"] > 0


def test_subscribers_are_told_of_every_terminal_job_with_stable_event_ids(suite: Suite) -> None:
    for channel, events in (("SNS", suite.topic_events), ("EventBridge", suite.bus_events)):
        told: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in events:
            told[event["job_id"]].append(event)
        untold = set(suite.jobs) - set(told)
        assert not untold, f"{channel}: no notification for {sorted(untold)}"
        assert set(told) <= set(suite.jobs), channel
        for job_id, job_events in told.items():
            status = suite.jobs[job_id]["status"]
            for event in job_events:
                assert event["event_id"] == f"{job_id}:{status}", (channel, event)
                assert event["status"] == status, (channel, event)
                assert event["type"] == f"job.{status.lower()}", (channel, event)


def test_no_message_is_left_in_a_dead_letter_queue_unaccounted_for(suite: Suite) -> None:
    queues = suite.local.stack.resources_of_type("AWS::SQS::Queue")
    assert set(DEAD_LETTER_QUEUES) == {name for name in queues if re.search("DeadLetter|Failure", name)}
    assert suite.dead_letter_depths == dict.fromkeys(DEAD_LETTER_QUEUES, 0), suite.dead_letter_depths
    assert suite.work_queue_depths == dict.fromkeys(WORK_QUEUES, 0), suite.work_queue_depths
    # What went through a dead-letter queue: exactly the jobs whose video never downloaded, failed with why.
    media_errors = {job_id for job_id, [run] in suite.runs_by_job.items() if run["media_errors"]}
    assert len(media_errors) == 2
    assert suite.dead_lettered == dict.fromkeys(media_errors, "FINALIZE_FAILED")
    for job_id in media_errors:
        error = suite.jobs[job_id]["error"]
        assert error["code"] == "FINALIZE_FAILED"
        assert "503" in error["message"], error


# --- the faults really happened (so that the invariants above cannot hold for want of them) -------------------


def test_every_webhook_was_sent_three_times_and_a_tenth_never(suite: Suite) -> None:
    for provider, record in suite.record.items():
        runs = record["requests"]
        dropped = [run for run in runs if run["webhook_dropped"]]
        low, high = share_bounds(len(runs), SHARED_FAULTS["drop_webhook_fraction"])
        extra = UNCONFIRMED_FIRST_JOB["drop_webhooks"] if provider == "fal" else 0  # the first job's, by counter
        assert low <= len(dropped) <= high + extra, (provider, len(dropped))
        for run in runs:
            # Each copy POSTed (a copy the gateway answered late was still handled: the emulator then resent it).
            copies = {delivery["copy"] for delivery in run["webhook_deliveries"]}
            assert copies == (set() if run["webhook_dropped"] else {0, 1, 2}), (provider, run)
        # The lost ones ended all the same: the reconciler polled the provider.
        for run in dropped:
            assert suite.jobs[job_of_webhook(run["webhook_url"])]["status"] in TERMINAL


def test_a_tenth_of_the_first_submits_were_refused_with_429_or_503(suite: Suite) -> None:
    for provider, record in suite.record.items():
        submitted = len(record["requests"])
        refusals = Counter(item["fault"] for item in record["rejected"])
        for fault in ("rate_limit", "server_error"):
            low, high = share_bounds(submitted, SHARED_FAULTS[f"{fault}_submit_fraction"])
            assert low <= refusals[fault] <= high, (provider, refusals)
        refused = Counter((item["fault"], job_of_webhook(item["webhook_url"])) for item in record["rejected"])
        assert set(refused.values()) == {1}, refused  # the first submit only: its retry went through
        assert {job_id for _, job_id in refused} <= set(suite.jobs)


def test_a_twentieth_of_the_submit_answers_were_lost_and_none_was_ordered_again(suite: Suite) -> None:
    for provider, record in suite.record.items():
        runs = record["requests"]
        lost = Counter(run["submit_answer"] for run in runs if run["submit_answer"] != "answered")
        gateway = f"gateway_{(FAL_FAULTS if provider == 'fal' else MIRAKO_FAULTS)['gateway_error_status']}"
        assert set(lost) <= {"dropped", gateway}, (provider, lost)
        for fault, kind in (("submit_answer_drop_fraction", "dropped"), ("submit_gateway_error_fraction", gateway)):
            low, high = share_bounds(len(runs), SHARED_FAULTS[fault])
            # The drop wins when both shares pick the same submit; the first fal job's drop is by counter.
            extra = UNCONFIRMED_FIRST_JOB["submit_answer_drops"] if (provider, kind) == ("fal", "dropped") else 0
            assert low - 1 <= lost[kind] <= high + extra, (provider, lost)
        for run in runs:
            if run["submit_answer"] != "answered":
                job = suite.jobs[job_of_webhook(run["webhook_url"])]
                # Adopted through its webhook (any outcome the run had), or given up without a second order.
                if run["webhook_dropped"]:
                    assert job["error"]["code"] == "SUBMISSION_UNCONFIRMED", job
                else:
                    assert (job["error"] or {}).get("code") != "SUBMISSION_UNCONFIRMED", job
    first = suite.jobs[next(iter(suite.jobs))]
    assert first["error"]["code"] == "SUBMISSION_UNCONFIRMED", first
    assert "No second order was placed" in first["error"]["message"]


def test_a_fiftieth_of_the_fal_runs_ended_with_the_apps_own_500(suite: Suite) -> None:
    runs = suite.record["fal"]["requests"]
    app_errors = [run for run in runs if run.get("app_error")]
    low, high = share_bounds(len(runs), FAL_FAULTS["app_error_fraction"])
    assert low <= len(app_errors) <= high, len(app_errors)
    for run in app_errors:
        job = suite.jobs[job_of_webhook(run["webhook_url"])]
        assert job["status"] == "FAILED", job
        if job["error"]["code"] != "SUBMISSION_UNCONFIRMED":
            assert job["error"]["code"] == "GENERATION_FAILED", job


def test_a_twentieth_of_the_video_uploads_failed_once(suite: Suite) -> None:
    s3_failures = [fault for fault in suite.faults if fault["fault"] == "s3_upload_500"]
    # Counted per worker process: the one killed below may have taken a few uploads' share with it.
    at_least = share_bounds(len(suite.videos), S3_UPLOAD_FAILURE_RATE)[0] - 1
    assert len(s3_failures) >= max(1, at_least), s3_failures
    for failure in s3_failures:
        match = _JOB_IN_VIDEO_KEY.search(failure["key"])
        assert match, failure
        assert suite.jobs[match[1]]["status"] == "SUCCEEDED", failure  # S3's client retry made it good


def test_the_finalizer_was_killed_mid_copy_and_its_message_came_back(suite: Suite) -> None:
    assert suite.kill is not None, "the finalizer was never caught in the middle of the slow download"
    kills = [fault for fault in suite.faults if fault["fault"] == "worker_killed"]
    assert [(kill["function"], kill["pid"]) for kill in kills] == [("FinalizeFunction", suite.kill.pid)]
    assert suite.local.worker_restarts == {"FinalizeFunction": 1}
    assert suite.local.worker_pid("FinalizeFunction") != suite.kill.pid
    downloads = [item for item in suite.record["fal"]["media_downloads"] if item["file_name"] == suite.kill.file_name]
    assert [item["outcome"] for item in downloads][:1] == ["aborted"], downloads
    assert (downloads[-1]["status"], downloads[-1]["outcome"]) == (200, "sent"), downloads
    # Not sooner than the finalize queue's visibility timeout after the message was received (before the first try).
    assert downloads[1]["at"] - downloads[0]["at"] >= FINALIZE_VISIBILITY_SECONDS - 1, downloads
    [killed_job] = [
        job_id for job_id, [run] in suite.runs_by_job.items() if run.get("request_id") == suite.kill.request_id
    ]
    assert suite.jobs[killed_job]["status"] == "SUCCEEDED"
    print(f"\nfailure suite: {len(suite.jobs)} jobs; {suite.timings}; faults: {_fault_counts(suite)}")


def _fault_counts(suite: Suite) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for provider, record in suite.record.items():
        runs = record["requests"]
        deliveries = [delivery for run in runs for delivery in run["webhook_deliveries"]]
        counts[f"{provider}_webhooks_dropped"] = sum(run["webhook_dropped"] for run in runs)
        counts[f"{provider}_webhook_posts"] = len(deliveries)
        counts[f"{provider}_webhook_posts_2xx"] = sum(200 <= delivery.get("status", 0) < 300 for delivery in deliveries)
        for fault, count in Counter(item["fault"] for item in record["rejected"]).items():
            counts[f"{provider}_{fault}_submits"] = count
        for answer, count in Counter(
            run["submit_answer"] for run in runs if run["submit_answer"] != "answered"
        ).items():
            counts[f"{provider}_submit_answers_{answer}"] = count
        counts[f"{provider}_app_errors"] = sum(bool(run.get("app_error")) for run in runs)
    counts |= Counter(fault["fault"] for fault in suite.faults)
    counts["dead_lettered"] = len(suite.dead_lettered)
    errors = Counter((job["error"] or {}).get("code") for job in suite.jobs.values() if job["status"] == "FAILED")
    counts |= {f"failed_{code}": count for code, count in errors.items()}
    counts["sns_notifications"], counts["eventbridge_notifications"] = len(suite.topic_events), len(suite.bus_events)
    return counts
