"""Finalize copy: a 1 GiB video served from loopback into moto S3, our copy path against boto3's upload_fileobj.

moto runs in server mode in its own process (devstack.moto_server), so the parts and the object it keeps are
not in the copying process; the video comes from tests.support.video_server, which generates the same
deterministic MP4-looking body (an `ftyp` box, then pseudo-random bytes) for every request without holding it.
Each copy runs in a fresh process (bench/finalize_copy_child.py): `avatarjobs` is the finalizer's real path
as composition builds it (VideoCopier, SafeFetcher allowing loopback http as on the local stack, S3VideoStore
with the configured part size), `upload_fileobj` is boto3's managed upload (default TransferConfig) of the same
URL's body streamed by httpx, on the same S3 client. The child reports its peak resident set growth (VmHWM,
reset just before the copy, minus VmRSS at that moment) and the wall time of the copy alone. After one copy
each that is not counted (moto's first join of a 1 GiB object is slow), runs are interleaved, alternating
which contender goes first; throughput is the best run of each, memory the worst.
After every copy the object is read back from S3: its size and SHA-256 must be the generated body's (and the
SHA-256 our copy reported must be too); then it is deleted, with no multipart upload left open. The CPU time
of the copying process and of moto's is recorded too: on a shared machine they say more than the wall time.
"""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avatarjobs.domain.video_copy import video_key
from bench.finalize_copy_child import AVATARJOBS, CONTENDERS, S3TRANSFER_TUNED, UPLOAD_FILEOBJ
from devstack.cloudformation import REGION
from devstack.moto_server import FAKE_CREDENTIALS, local_session
from devstack.processes import ChildServer, launch, stop_all
from tests.support.generated_video import generated_sha256, stored_size_and_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
VIDEO_BYTES = 1024 * MIB
SEED = 6
RUNS = 3
TARGET_PEAK_GROWTH_BYTES = 64 * MIB
TARGET_RATIO = 1.0  # our throughput over upload_fileobj's, and the tuned s3transfer's over ours
# Passed on to the children when set, e.g. to measure another part size.
_PASSED_ON = ("PATH", "HOME", "LANG", "FINALIZE_PART_BYTES")


class BenchFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class CopyRun:
    contender: str
    seconds: float
    cpu_seconds: float  # the copying process's, all threads
    moto_cpu_seconds: float  # moto's during the copy
    size: int
    peak_growth_bytes: int  # VmHWM during the copy minus VmRSS when it started
    kept_bytes: int  # VmRSS after the copy minus before
    complete_seconds: float  # of `seconds`, in CompleteMultipartUpload (moto joining the parts), retries included
    s3_calls: dict[str, int]  # operation -> calls
    s3_attempts: dict[str, int]  # operation -> HTTP requests (botocore's retries included)
    part_bytes: int  # the part size our copy path is configured with (in both children)

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds


@dataclass(frozen=True)
class ContenderResult:
    name: str
    runs: tuple[CopyRun, ...]

    @property
    def best(self) -> CopyRun:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def mb_per_s(self) -> float:
        return self.best.mb_per_s

    @property
    def peak_growth_bytes(self) -> int:
        return max(run.peak_growth_bytes for run in self.runs)


@dataclass(frozen=True)
class FinalizeCopyResult:
    video_bytes: int
    ours: ContenderResult
    upload_fileobj: ContenderResult
    s3transfer_tuned: ContenderResult
    load_average: tuple[float, float]  # the machine's 1-minute load average before and after

    @property
    def contenders(self) -> tuple[ContenderResult, ...]:
        return (self.ours, self.upload_fileobj, self.s3transfer_tuned)

    @property
    def tuned_ratio(self) -> float:
        """The tuned s3transfer's throughput over ours (its target: >= TARGET_RATIO, within the memory target)."""
        return self.s3transfer_tuned.mb_per_s / self.ours.mb_per_s

    @property
    def tuned_meets_targets(self) -> bool:
        """Both figures within target. Whether it replaces our store also takes what it cannot do (a failed part
        does not stop its read of the download; no part under 5 MiB): docs/decisions.md."""
        return self.tuned_ratio >= TARGET_RATIO and self.s3transfer_tuned.peak_growth_bytes <= TARGET_PEAK_GROWTH_BYTES

    @property
    def part_bytes(self) -> int:
        return self.ours.best.part_bytes

    @property
    def ratio(self) -> float:
        return self.ours.mb_per_s / self.upload_fileobj.mb_per_s

    @property
    def memory_met(self) -> bool:
        return self.ours.peak_growth_bytes <= TARGET_PEAK_GROWTH_BYTES

    @property
    def throughput_met(self) -> bool:
        return self.ratio >= TARGET_RATIO

    @property
    def met(self) -> bool:
        return self.memory_met and self.throughput_met


def _child_environment(endpoint: str) -> dict[str, str]:
    # From scratch, like the local stack gives its functions: no real AWS profile, moto's endpoint.
    return {
        **{name: os.environ[name] for name in _PASSED_ON if name in os.environ},
        **FAKE_CREDENTIALS,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AVATARJOBS_ALLOW_LOOPBACK_HTTP": "1",
        "FAL_MEDIA_HOSTS": "127.0.0.1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }


def _run_child(contender: str, url: str, bucket: str, job_id: str, environment: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bench.finalize_copy_child", contender, url, bucket, job_id],
        env=environment,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchFailed(f"{contender} failed:\n{completed.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if figures["peak_was_reset"] is not True:
        raise BenchFailed("the kernel refused to reset the peak resident set (/proc/self/clear_refs)")
    return figures


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _verified(s3: "S3Client", bucket: str, job_id: str, figures: dict[str, Any], expected: tuple[int, str]) -> CopyRun:
    """The run's figures once S3 is seen to hold the whole video (which is then deleted)."""
    contender = figures["contender"]
    key = video_key(job_id)
    stored = stored_size_and_sha256(s3, bucket, key)
    if stored != expected:
        raise BenchFailed(f"{contender}: S3 holds {stored} (size, SHA-256), not {expected}")
    if figures["size"] != expected[0]:
        raise BenchFailed(f"{contender}: reported {figures['size']} bytes copied, not {expected[0]}")
    if contender in (AVATARJOBS, S3TRANSFER_TUNED) and figures["sha256"] != expected[1]:
        raise BenchFailed(f"{contender}: reported SHA-256 {figures['sha256']}, not {expected[1]}")
    s3.delete_object(Bucket=bucket, Key=key)  # moto keeps objects in its memory: one at a time
    if s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        raise BenchFailed(f"{contender}: a multipart upload was left open")
    return CopyRun(
        contender=contender,
        seconds=figures["seconds"],
        cpu_seconds=figures["cpu_seconds"],
        moto_cpu_seconds=figures["moto_cpu_seconds"],
        size=figures["size"],
        peak_growth_bytes=(figures["peak_kib"] - figures["rss_before_kib"]) * 1024,
        kept_bytes=(figures["rss_after_kib"] - figures["rss_before_kib"]) * 1024,
        complete_seconds=figures["complete_seconds"],
        s3_calls=figures["s3_calls"],
        s3_attempts=figures["s3_attempts"],
        part_bytes=figures["part_bytes"],
    )


@contextmanager
def _servers(video_bytes: int, seed: int) -> Iterator[tuple[ChildServer, str]]:
    """moto (its endpoint in .url) and the video's URL, each server in its own process."""
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as logs:
        video_args = ("--size", str(video_bytes), "--seed", str(seed))
        children = [
            launch("devstack.moto_server", log=Path(logs) / "moto.log"),
            launch("tests.support.video_server", *video_args, log=Path(logs) / "video.log"),
        ]
        try:
            moto, video = children
            moto.wait_until_serving()
            yield moto, f"{video.wait_until_serving()}/video.mp4"
        finally:
            stop_all(children)


def measure(video_bytes: int = VIDEO_BYTES, runs: int = RUNS, seed: int = SEED) -> FinalizeCopyResult:
    expected = (video_bytes, generated_sha256(video_bytes, seed))
    samples: dict[str, list[CopyRun]] = {name: [] for name in CONTENDERS}
    load_before = os.getloadavg()[0]
    with _servers(video_bytes, seed) as (moto, url):
        s3 = local_session().client("s3", endpoint_url=moto.url)
        bucket = f"bench-outputs-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        environment = _child_environment(moto.url)

        # One copy each first, not counted: moto's first CompleteMultipartUpload of 1 GiB is seconds slower than
        # the next ones (its process grows to hold the joined object), which would fall on whoever goes first.
        def copy(contender: str, job_id: str) -> CopyRun:
            moto_cpu = _process_cpu_seconds(moto.pid)
            figures = _run_child(contender, url, bucket, job_id, environment)
            figures["moto_cpu_seconds"] = _process_cpu_seconds(moto.pid) - moto_cpu
            return _verified(s3, bucket, job_id, figures, expected)

        for contender in CONTENDERS:
            copy(contender, f"bench-warm-up-{contender}")
        for round_number in range(runs):
            # Each contender first once in every len(CONTENDERS) rounds.
            shift = round_number % len(CONTENDERS)
            order = CONTENDERS[shift:] + CONTENDERS[:shift]
            for contender in order:
                samples[contender].append(copy(contender, f"bench-{round_number}-{contender}"))
    return FinalizeCopyResult(
        video_bytes=video_bytes,
        ours=ContenderResult(AVATARJOBS, tuple(samples[AVATARJOBS])),
        upload_fileobj=ContenderResult(UPLOAD_FILEOBJ, tuple(samples[UPLOAD_FILEOBJ])),
        s3transfer_tuned=ContenderResult(S3TRANSFER_TUNED, tuple(samples[S3TRANSFER_TUNED])),
        load_average=(load_before, os.getloadavg()[0]),
    )


def describe(result: FinalizeCopyResult) -> list[str]:
    lines = [f"part size {result.part_bytes / MIB:g} MiB"]
    for contender in result.contenders:
        for run in contender.runs:
            lines.append(
                f"{contender.name}: {run.seconds:.2f} s (CPU {run.cpu_seconds:.2f} s, "
                f"moto {run.moto_cpu_seconds:.2f} s), {run.mb_per_s:.1f} MB/s, peak RSS growth "
                f"{run.peak_growth_bytes / MIB:.1f} MiB (kept {run.kept_bytes / MIB:.1f} MiB), "
                f"complete {run.complete_seconds:.1f} s, calls {run.s3_calls}, attempts {run.s3_attempts}"
            )
    lines.append(
        f"ratio {result.ratio:.2f}x; ours peak {result.ours.peak_growth_bytes / MIB:.1f} MiB; "
        f"{'met' if result.met else 'NOT met'}; tuned s3transfer {result.tuned_ratio:.2f}x ours, peak "
        f"{result.s3transfer_tuned.peak_growth_bytes / MIB:.1f} MiB: "
        f"{'both targets met' if result.tuned_meets_targets else 'targets not met'}"
    )
    return lines


if __name__ == "__main__":
    print("\n".join(describe(measure(video_bytes=int(sys.argv[1]) if len(sys.argv) > 1 else VIDEO_BYTES))))
