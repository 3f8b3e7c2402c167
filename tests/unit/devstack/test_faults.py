"""The local stack's fault knobs (devstack/faults.py): exact shares, the emulators' fractions, stalls and media
errors, and S3 uploads that fail once at the botocore boundary."""

import base64
import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.config import Config

from devstack import media
from devstack.emulators.fal import FalEmulator
from devstack.emulators.mirako import MirakoEmulator
from devstack.emulators.settings import EmulatorSettings
from devstack.faults import FAULT_LOG_VARIABLE, EvenSelection, install_s3_upload_faults, read_faults, upload_key
from devstack.moto_server import local_session
from devstack.processes import server_process

QUEUED = EmulatorSettings(queue_seconds=600)  # runs wait in the queue: submits are all these tests need
FACE = "data:image/png;base64,iVBORw0KGgo="


def test_an_even_selection_picks_an_exact_share_and_keeps_its_answers() -> None:
    selection = EvenSelection(0.1, "salt")
    picks = [selection.selects(f"job-{n}") for n in range(200)]

    assert sum(picks) == 20
    assert [selection.selects(f"job-{n}") for n in range(200)] == picks  # asked again: the same answers
    assert max(len(run) for run in "".join("x" if pick else "." for pick in picks).split("x")) <= 10  # spread
    other = EvenSelection(0.1, "another salt")
    assert [other.selects(f"job-{n}") for n in range(200)] != picks
    assert sum(EvenSelection(0.05, "s").selects(str(n)) for n in range(19)) in (0, 1)
    assert not any(EvenSelection(0.0, "s").selects(str(n)) for n in range(50))
    assert all(EvenSelection(1.0, "s").selects(str(n)) for n in range(50))
    with pytest.raises(ValueError, match="between 0 and 1"):
        EvenSelection(1.5, "s")


@pytest.fixture
def fal() -> Iterator[FalEmulator]:
    with FalEmulator(QUEUED) as emulator:
        yield emulator


def fal_submit(emulator: FalEmulator, job: str) -> httpx.Response:
    webhook = f"http://127.0.0.1:9/v1/webhooks/fal/{job}"
    body = {"image_url": FACE, "audio_url": FACE, "prompt": "A person talking."}
    return httpx.post(
        f"{emulator.base_url}/fal-ai/ai-avatar",
        params={"fal_webhook": webhook},
        json=body,
        headers={"Authorization": "Key k"},
        timeout=10,
    )


def test_a_share_of_jobs_gets_its_first_submit_refused_and_its_retry_accepted(fal: FalEmulator) -> None:
    fal.update_settings(rate_limit_submit_fraction=0.25, server_error_submit_fraction=0.1, retry_after_seconds=3)
    first = {job: fal_submit(fal, job) for job in (f"job-{n}" for n in range(40))}

    refused = {job for job, answer in first.items() if answer.status_code != 200}
    assert {answer.status_code for answer in first.values()} == {200, 429, 503}
    assert {answer.headers.get("Retry-After") for answer in first.values() if answer.status_code == 429} == {"3"}
    retrying = set(refused)
    for _ in range(2):  # a job picked by both shares gets 503, then 429, then its run
        retrying = {job for job in retrying if fal_submit(fal, job).status_code != 200}
    assert not retrying
    record = fal.requests_record()
    assert len(record["requests"]) == 40  # every job accepted exactly once in the end
    assert Counter(item["fault"] for item in record["rejected"]) == {"rate_limit": 10, "server_error": 4}
    assert {item["webhook_url"].rsplit("/", 1)[1] for item in record["rejected"]} == refused


def test_a_share_of_runs_sends_no_webhook(fal: FalEmulator) -> None:
    fal.update_settings(drop_webhook_fraction=0.1, fault_seed="a seed")
    for n in range(30):
        assert fal_submit(fal, f"job-{n}").status_code == 200

    runs = fal.requests_record()["requests"]
    assert sum(run["webhook_dropped"] for run in runs) == 3


def test_a_media_error_run_answers_503_and_a_slow_download_stalls_half_way(fal: FalEmulator) -> None:
    fal.update_settings(media_error_runs=1, slow_media=1, slow_media_seconds=30)
    broken, slow = (fal_submit(fal, job).json()["request_id"] for job in ("job-1", "job-2"))
    video = bytes(range(256)) * 40
    broken_url = fal.store_media(f"{broken}.mp4", video)
    slow_url = fal.store_media(f"{slow}.mp4", video)

    assert httpx.get(broken_url, timeout=10).status_code == 503
    with httpx.Client(timeout=10) as client, client.stream("GET", slow_url) as response:
        received = b""
        for chunk in response.iter_raw(1024):
            received += chunk
            if len(received) >= len(video) // 2:
                downloads = fal.requests_record()["media_downloads"]
                assert (downloads[-1]["slow"], downloads[-1]["outcome"]) == (True, "stalled")
                break  # and the connection is dropped, like a downloader that crashed
    # The client went away during the stall: the download ends at once, aborted.
    deadline = time.monotonic() + 5
    while fal.requests_record()["media_downloads"][-1]["outcome"] == "stalled" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(d["status"], d["slow"], d["outcome"]) for d in fal.requests_record()["media_downloads"]] == [
        (503, False, "sent"),
        (200, True, "aborted"),
    ]
    assert httpx.get(slow_url, timeout=10).content == video  # slow_media used up: the next one is whole


def test_mirako_names_the_refused_job_by_its_webhook_url() -> None:
    with MirakoEmulator(QUEUED) as mirako:
        mirako.update_settings(server_error_submit_fraction=1.0)
        webhook_url = "http://127.0.0.1:9/v1/webhooks/mirako/J1"
        wav = base64.b64encode(media.wav_bytes(b"\0\0", 16_000)).decode()  # the audio must be an audio file
        body = {"image": "aGk=", "audio": wav, "webhook": {"url": webhook_url}}
        url = f"{mirako.base_url}/v1/video/async_generate_talking_avatar"
        headers = {"Authorization": "Bearer k"}
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 503
        assert httpx.post(url, json=body, headers=headers, timeout=10).status_code == 200
        [refused] = mirako.requests_record()["rejected"]
        assert (refused["fault"], refused["webhook_url"]) == ("server_error", webhook_url)


def test_upload_keys_name_the_object_and_the_part() -> None:
    assert upload_key("http://127.0.0.1:5000/out/videos/a.mp4") == "127.0.0.1/out/videos/a.mp4#1"
    assert (
        upload_key("http://127.0.0.1:5000/out/videos/a.mp4?partNumber=3&uploadId=x") == "127.0.0.1/out/videos/a.mp4#3"
    )


def test_s3_uploads_fail_once_at_the_botocore_boundary_and_the_client_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_LOG_VARIABLE, str(tmp_path / "faults.jsonl"))
    session = local_session()
    install_s3_upload_faults(0.5, "test", session=session)
    retries: Any = {"mode": "standard", "max_attempts": 3}
    with server_process("devstack.moto_server", log=tmp_path / "moto.log") as endpoint:
        s3 = session.client("s3", endpoint_url=endpoint, config=Config(retries=retries))
        s3.create_bucket(Bucket="outputs")
        attempts = [
            s3.put_object(Bucket="outputs", Key=f"videos/{n}.mp4", Body=b"video")["ResponseMetadata"]["RetryAttempts"]
            for n in range(4)
        ]
        upload = s3.create_multipart_upload(Bucket="outputs", Key="videos/big.mp4")["UploadId"]
        part_attempts = [
            s3.upload_part(
                Bucket="outputs", Key="videos/big.mp4", UploadId=upload, PartNumber=n, Body=io.BytesIO(b"x" * 10)
            )["ResponseMetadata"]["RetryAttempts"]
            for n in (1, 2)
        ]
        stored = [s3.get_object(Bucket="outputs", Key=f"videos/{n}.mp4")["Body"].read() for n in range(4)]
        again = s3.put_object(Bucket="outputs", Key="videos/1.mp4", Body=b"video")["ResponseMetadata"]

    assert sorted(attempts + part_attempts) == [0, 0, 0, 1, 1, 1]  # half of them, each retried once
    assert stored == [b"video"] * 4
    assert again["RetryAttempts"] == 0  # a key fails once
    faults = read_faults(tmp_path / "faults.jsonl")
    assert len(faults) == 3
    assert {fault["fault"] for fault in faults} == {"s3_upload_500"}
    assert {fault["operation"] for fault in faults} <= {"PutObject", "UploadPart"}
    assert all(fault["key"].startswith("127.0.0.1/outputs/videos/") for fault in faults)
    json.dumps(faults)  # plain JSON, for any reader
