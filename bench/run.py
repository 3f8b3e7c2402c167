"""`make bench`: runs the benchmarks and writes docs/benchmarks.md (the figures, the machine, the command)."""

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from boto3.s3.transfer import TransferConfig

from bench import aws_calls, cold_start, finalize_copy, throughput, webhook_ack

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "benchmarks.md"
COMMAND = "make bench"


class CallPlan(NamedTuple):
    """A call a successful job could do without, recognised by its function, operation and what made it."""

    function: str
    operation: str
    made_by: str  # a substring of AwsCall.via
    plan: str


# Each is a change to production code, proposed here and not made: this benchmark only measures. Done already:
# the `enqueued_at`/`finalize_enqueued_at` markers (the reconciler finds lost messages by silence), dispatch's and
# the webhook's reads (one conditional UpdateItem each, ALL_OLD when refused), finalize's read (the message
# carries the URL), and one PutObject for a video that fits in one part. See docs/decisions.md.
CALL_PLAN = [
    CallPlan(
        "notify",
        "Publish",
        "Subscribers.publish",
        "publish once, to EventBridge, and fan out to the SNS topic with a rule on the bus (a template change) "
        "instead of a second API call per event; this needs the contract changed first: an EventBridge target "
        "cannot set the SNS message attributes (`status`, `provider`, `type`) DESIGN.md promises for filter "
        "policies, so subscribers would filter on the message body instead",
    ),
]


def _machine() -> list[tuple[str, str]]:
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return [
        ("CPUs (nproc)", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())),
        ("Memory (MemTotal)", memory),
        ("Python", f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"),
        ("Platform", platform.platform()),
        ("Processor", platform.machine()),
    ]


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _cold_start_section(result: cold_start.ColdStartResult) -> list[str]:
    floor = result.floor
    lines = [
        "## Cold start",
        "",
        f"Each sample is a fresh `{Path(sys.executable).name} -c` process that puts the function's CodeUri and its "
        "layers on `sys.path`, has the function's environment from template.yaml (plus what the Lambda runtime "
        "sets, `AWS_LAMBDA_FUNCTION_NAME` among it), and times `importlib.import_module` of the Handler's module "
        f"with `perf_counter`. Minimum of {result.runs} runs per target, runs interleaved with the floor (a fresh "
        "process that only imports boto3) in the same run. Target: "
        f"<= {cold_start.TARGET_RATIO}x the floor for every function.",
        "",
        "| Function | Min import (ms) | Median (ms) | Ratio to floor | Target | Status | Ready (ms) | Ready floor "
        "(ms) | boto3 clients | Ready ratio | Target | Status |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|",
        f"| floor: `import boto3` | {floor.min_ms:.1f} | {statistics.median(floor.samples_ms):.1f} | 1.00x | | | "
        "| | | | | |",
    ]
    for name, timing in result.functions.items():
        lines.append(
            f"| {name} | {timing.min_ms:.1f} | {statistics.median(timing.samples_ms):.1f} | "
            f"{result.ratio(name):.2f}x | <= {cold_start.TARGET_RATIO}x | {_met(result.met(name))} | "
            f"{result.ready[name].min_ms:.1f} | {result.ready_floor[name].min_ms:.1f} | "
            f"{', '.join(result.clients[name]) or 'none'} | {result.ready_ratio(name):.2f}x | "
            f"<= {cold_start.TARGET_READY_RATIO}x | {_met(result.ready_met(name))} |"
        )
    lines += [
        "",
        "*Ready* is cold start as Lambda pays it: the same fresh process going one step further, to what the first "
        "invocation adds before its first AWS call: it calls each `avatarjobs.composition` factory the handler "
        "module imports, which imports that function's services, adapters and providers and creates its boto3 "
        "clients (nothing is sent). Its floor, in the same run, is a fresh process that imports boto3 and creates "
        f"the same boto3 clients (listed). Target: <= {cold_start.TARGET_READY_RATIO}x that floor for every "
        "function. A handler whose import is under the `import boto3` floor no longer imports boto3 at import time "
        "at all (its first invocation does, when it builds its clients).",
        "",
        "The floor is what every function pays before its first AWS call (its first invocation imports boto3 to "
        "create its clients, if its import did not). The interpreters reuse the `__pycache__` "
        "written by the first run; in Lambda, /var/task is read-only and `sam build` does not precompile, so a "
        "real cold start also compiles every module and is slower than these figures.",
        "",
    ]
    for name, offenders in result.offenders.items():
        lines += [
            f'### `python -X importtime -c "import app"`: {name}, top 10 by cumulative time',
            "",
            "| Module | Depth | Cumulative (ms) | Self (ms) |",
            "|---|---:|---:|---:|",
            *(f"| `{o.module}` | {o.depth} | {o.cumulative_ms:.1f} | {o.self_ms:.1f} |" for o in offenders),
            "",
            "Depth 1 is imported by the handler module itself; a module's cumulative time includes what it imports "
            "first (one `importtime` run, so single-sample figures).",
            "",
        ]
    return lines


def _cold_start_plan(result: cold_start.ColdStartResult) -> list[str]:
    if all(result.met(name) for name in result.functions):
        return []
    plans: dict[str, tuple[float, str, list[str]]] = {}  # package -> (worst cumulative ms, plan, functions)
    for function, found in result.avoidable.items():
        for package, cumulative, plan in found:
            worst, _, functions = plans.get(package, (0.0, plan, []))
            plans[package] = (max(worst, cumulative), plan, [*functions, function])
    every = len(result.functions)
    lines = [
        "### Plan for the cold-start gap",
        "",
        "Heavy imports that a handler's import does not need, from `-X importtime` of every function, largest "
        "first (the worst cumulative ms at their first import, which includes whatever shared dependency that "
        "import pulls in first, so the figures overlap and do not add up; which functions import them):",
        "",
        *(
            f"- `{package}` ({ms:.0f} ms; {'all functions' if len(names) == every else ', '.join(names)}): {plan}."
            for package, (ms, plan, names) in sorted(plans.items(), key=lambda item: item[1][0], reverse=True)
        ),
        "",
    ]
    return lines


def _aws_calls_section(result: aws_calls.AwsCallsResult) -> list[str]:
    lines = [
        "## AWS calls per job",
        "",
        "One successful fal job (`fal-ai/ai-avatar/multi-text`, a 20 kB video) driven through the real handlers "
        "under moto with template.yaml's resources and fal under respx: api (`POST /jobs`), dispatch (the SQS "
        "record), webhook (a signed delivery, JWKS served), finalize (the SQS record), notify (the records of the "
        "table's stream). Counted with a botocore `before-call` hook on the clients the handlers use; the "
        "benchmark's own calls (provisioning, SQS receives and stream reads standing in for Lambda's event "
        "sources, the final read of the job) are not counted. The provider key comes from `FAL_KEY`, as in the "
        "tests: with `FalKeySecretArn` set, a cold container adds one Secrets Manager `GetSecretValue` "
        "(cached five minutes) in each function that calls fal.",
        "",
        "| # | Function | Service | Operation | Made by |",
        "|---:|---|---|---|---|",
        *(f"| {n} | {c.function} | {c.service} | {c.operation} | `{c.via}` |" for n, c in enumerate(result.calls, 1)),
        "",
        f"Total: **{result.total}** calls; **{result.outside_part_uploads}** outside the "
        f"{result.part_uploads} S3 UploadPart call(s). Target: <= {aws_calls.TARGET_CALLS} outside the part "
        f"uploads: {_met(result.met)}. The job ended {result.job_status}.",
        "",
    ]
    if result.met:
        return lines
    removable = [
        item.plan
        for item in CALL_PLAN
        if any(
            c.function == item.function and c.operation == item.operation and item.made_by in c.via
            for c in result.calls
        )
    ]
    lines += [
        "### Plan for the AWS-calls gap (proposed, not made)",
        "",
        f"Each item removes one call from a successful job; together {len(removable)} of "
        f"{result.outside_part_uploads}, which would leave {result.outside_part_uploads - len(removable)}:",
        "",
        *(f"{n}. {plan}." for n, plan in enumerate(removable, 1)),
        "",
        "The two conditional UpdateItems of dispatch (claim, then SUBMITTED) stay: the claim is what keeps a job "
        "from being submitted to the provider twice.",
        "",
    ]
    return lines


def _webhook_ack_section(result: webhook_ack.WebhookAckResult) -> list[str]:
    lines = [
        "## Webhook acknowledgement",
        "",
        f"The warm webhook handler (`functions/webhook/app.py` `lambda_handler`, called in-process) over "
        f"{result.deliveries:,} genuine, validly signed fal completions, one per job, each job ordered and "
        "dispatched through the real API and dispatch handlers so that it is SUBMITTED; fal's JWKS and submit "
        "under respx. AWS is moto in server mode (`devstack.moto_server`, a child process on loopback) holding "
        "template.yaml's resources. Each call is timed with `perf_counter`; one delivery before them warms the "
        "handler (JWKS fetch, clients) and is not counted. The floor, in the same run against the same server "
        "and with the handler's own boto3 clients (`avatarjobs.adapters.aws_clients`): one conditional "
        "UpdateItem of a job-sized item plus one SendMessage, what a delivery has to do at the least; floor "
        "samples alternate with the deliveries. Target: handler p50 <= "
        f"{webhook_ack.TARGET_RATIO}x the floor's p50.",
        "",
        "| | p50 (ms) | p99 (ms) |",
        "|---|---:|---:|",
        f"| webhook handler | {result.handler_p50:.2f} | {result.handler_p99:.2f} |",
        f"| floor: UpdateItem + SendMessage | {result.floor_p50:.2f} | {result.floor_p99:.2f} |",
        f"| ratio | {result.ratio_p50:.2f}x | {result.ratio_p99:.2f}x |",
        "",
        f"Answers: {', '.join(f'{count} `{outcome}`' for outcome, count in sorted(result.outcomes.items()))}. "
        f"AWS calls of a delivery: {len(result.calls)} ({', '.join(result.calls)}), the floor's 2. "
        f"Target p50 <= {webhook_ack.TARGET_RATIO}x: {_met(result.met)}.",
        "",
    ]
    if result.met or len(result.calls) <= 2:
        return lines
    return [
        *lines,
        f"Most of the gap is the {len(result.calls) - 2} call(s) past the floor's two, each one more round trip "
        "to the server; the webhook items of the AWS-calls plan above would leave the floor's two. The rest is "
        "the handler's own work (resolver, signature check, logging and metrics), the same on every delivery.",
        "",
    ]


def _throughput_section(result: throughput.ThroughputResult) -> list[str]:
    return [
        "## Throughput",
        "",
        f"{result.jobs} `fal-ai/ai-avatar` jobs (the sample face and a half-second WAV as data URIs) ordered at "
        "once over HTTP on the local stack (`devstack.stack.LocalStack`, every function one warm worker process "
        "taking one invocation at a time, behind the API Gateway emulation, the SQS pollers and the table's "
        f"stream), each POST from its own thread, all released together; the fal emulator set to `instant` "
        f"(no waits, one shared sample video) with {throughput.EMULATOR_WORKERS} runs at a time. A queue "
        "subscribed to the job-events topic stands for a subscriber; latency is per job, from just before its "
        "POST to the receipt of its notification. Target: all succeed.",
        "",
        "| Jobs | Succeeded | Wall time (s) | Jobs per second | p50 submit to notification (s) | p99 (s) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result.jobs} | {result.succeeded} | {result.wall_seconds:.1f} | {result.jobs_per_second:.2f} | "
        f"{result.p50_ms / 1000:.2f} | {result.p99_ms / 1000:.2f} |",
        "",
        f"Outcomes: {', '.join(f'{count} {kind}' for kind, count in sorted(result.outcomes.items()))}. "
        f"All succeed: {_met(result.met)}." + (f" Why not: {result.reason}." if result.reason else ""),
        "",
        "The local stack runs one execution environment per function where Lambda would scale out, so these "
        "figures measure the pipeline's per-job work on one machine, not a deployed stack's concurrency.",
        "",
    ]


def _mib(value: int) -> str:
    return f"{value / finalize_copy.MIB:.1f}"


def _finalize_copy_section(result: finalize_copy.FinalizeCopyResult) -> list[str]:
    ours, theirs = result.ours, result.upload_fileobj
    runs = len(ours.runs)
    # Imported here, not at the top: the AWS-calls benchmark sets the functions' environment (Powertools reads
    # it when the layer's observability module is first imported), and it runs before this section.
    from avatarjobs.adapters.video_store import default_parts_in_flight  # noqa: PLC0415

    in_flight = default_parts_in_flight(result.part_bytes)
    target_mib = finalize_copy.TARGET_PEAK_GROWTH_BYTES // finalize_copy.MIB
    lines = [
        "## Finalize copy",
        "",
        f"A {result.video_bytes / 1024**3:g} GiB video generated as it is served (an `ftyp` box, then "
        "pseudo-random bytes; `tests.support.video_server`) over loopback HTTP into moto in server mode "
        "(`devstack.moto_server`, so the bytes moto keeps are not in the copying process), each copy in a fresh "
        "process (`bench/finalize_copy_child.py`). **avatarjobs** is the finalizer's copy path as composition "
        "builds it: SafeFetcher (loopback http allowed, as on the local stack), VideoCopier, S3VideoStore with "
        f"{result.part_bytes / finalize_copy.MIB:g} MiB parts, up to {in_flight} in flight while the next is read, "
        "CRC32 per part, SHA-256 of the whole video. **upload_fileobj** is boto3's managed upload (default "
        f"TransferConfig: 8 MiB parts, up to {TransferConfig().max_request_concurrency} threads, CRC32 per part, no "
        "hash of the whole) of the same URL's body streamed by httpx and wrapped as a file. **s3transfer_tuned** is "
        "the same managed upload configured like our copy (8 MiB parts, 4 in flight, `max_in_memory_upload_chunks` "
        "4) with the SHA-256 of the whole taken by a wrapper over the stream, measured as a replacement of our store: "
        'meeting both targets is necessary, not sufficient (docs/decisions.md, "Finalize streams with its own '
        'multipart upload", says what else it would have to keep). All use the production '
        "S3 client of `aws_clients` with a longer read timeout (moto answers the CompleteMultipartUpload of 1 GiB "
        "after seconds of silence, where S3 keeps the connection alive with whitespace; at 10 s both copies "
        "retried it). Peak RSS growth is VmHWM, reset just before the copy (`/proc/self/clear_refs`), minus VmRSS "
        "at that moment; the time is the copy's alone, CompleteMultipartUpload included. "
        f"After one copy each that is not counted (moto's first join of 1 GiB is seconds slower), {runs} runs each, "
        "interleaved with the order alternating; throughput is the best run, memory the worst. "
        "After every copy the object is read back from S3: its size and SHA-256 are the generated body's, and "
        f"so is the SHA-256 our copy reported. Targets: peak RSS growth <= {target_mib} MiB; throughput >= "
        f"{finalize_copy.TARGET_RATIO}x upload_fileobj.",
        "",
        "| Copy | Best time (s) | Throughput (MB/s) | Ratio | Peak RSS growth, worst run (MiB) | S3 calls | Target "
        "| Status |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    tuned = result.s3transfer_tuned
    for contender, target, status in (
        (
            ours,
            f"<= {target_mib} MiB, >= {finalize_copy.TARGET_RATIO}x",
            f"memory {_met(result.memory_met)}, throughput {_met(result.throughput_met)}",
        ),
        (theirs, "", ""),
        (
            tuned,
            f"<= {target_mib} MiB and >= {finalize_copy.TARGET_RATIO}x ours",
            f"{result.tuned_ratio:.2f}x ours: {_met(result.tuned_meets_targets)}",
        ),
    ):
        best = contender.best
        calls = ", ".join(f"{count} {name}" for name, count in best.s3_calls.items())
        ratio = contender.mb_per_s / theirs.mb_per_s
        lines.append(
            f"| {contender.name} | {best.seconds:.1f} | {best.mb_per_s:.1f} | {ratio:.2f}x | "
            f"{_mib(contender.peak_growth_bytes)} | {calls} | {target} | {status} |"
        )
    lines += [
        "",
        "| Run | Copy | Time (s) | MB/s | CPU, copying process (s) | CPU, moto (s) | CompleteMultipartUpload (s) "
        "| Peak RSS growth (MiB) | RSS kept after (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number in range(runs):
        for contender in result.contenders:
            run = contender.runs[number]
            lines.append(
                f"| {number + 1} | {contender.name} | {run.seconds:.1f} | {run.mb_per_s:.1f} | "
                f"{run.cpu_seconds:.1f} | {run.moto_cpu_seconds:.1f} | {run.complete_seconds:.1f} | "
                f"{_mib(run.peak_growth_bytes)} | {_mib(run.kept_bytes)} |"
            )
    before, after = result.load_average

    def best_upload(contender: finalize_copy.ContenderResult) -> float:
        return min(run.seconds - run.complete_seconds for run in contender.runs)

    def mean_cpu(contender: finalize_copy.ContenderResult) -> float:
        return statistics.mean(run.cpu_seconds for run in contender.runs)

    lines += [
        "",
        "Most of either copy's CPU is moto's, not the copier's (it hashes every part for its ETag and joins the "
        "parts in Python on CompleteMultipartUpload), and the copy, moto and the video server share the machine's "
        f"CPUs with whatever else runs (1-minute load average {before:.1f} before, {after:.1f} after): wall times "
        "vary from run to run far more than CPU times do, CompleteMultipartUpload's most of all. Without it, the "
        f"best upload phases were {best_upload(ours):.1f} s (avatarjobs) and {best_upload(theirs):.1f} s "
        f"(upload_fileobj); the copying process used {mean_cpu(ours):.1f} s and {mean_cpu(theirs):.1f} s of CPU "
        f"on average ({mean_cpu(tuned):.1f} s for the tuned s3transfer). Our copy does one more pass over the bytes "
        "than upload_fileobj, the SHA-256 of the whole "
        "video that the job reports, hence its higher CPU time, which counts on a machine whose CPUs the copy, "
        "moto and the video server keep busy. Its part buffers are reused "
        f"({in_flight + 1} of them, {_mib((in_flight + 1) * result.part_bytes)} MiB), where upload_fileobj holds "
        "a fresh part-sized buffer for every part it has read ahead.",
        "",
    ]
    if not result.throughput_met:
        lines += [
            "Plan for the throughput gap: the SHA-256 of the whole video runs in the thread that reads the download, "
            "chunk by chunk; hashing each finished part in a thread of its own (in order, before its buffer is "
            "reused; hashlib releases the GIL on large buffers) would take it off the read path, at no cost in "
            "memory. The gap is within the run-to-run spread of moto's CompleteMultipartUpload, so a deployed "
            "stack (real S3 over https, where botocore does not hash bodies to sign them) may not show it.",
            "",
        ]
    return lines


def _summary(
    cold: cold_start.ColdStartResult,
    calls: aws_calls.AwsCallsResult,
    copy: finalize_copy.FinalizeCopyResult,
    ack: webhook_ack.WebhookAckResult,
    flow: throughput.ThroughputResult,
) -> list[str]:
    worst = max(cold.functions, key=cold.ratio)
    met_count = sum(1 for name in cold.functions if cold.met(name))
    worst_ready = max(cold.functions, key=cold.ready_ratio)
    ready_met_count = sum(1 for name in cold.functions if cold.ready_met(name))
    ack_row = (
        f"| Webhook acknowledgement p50/p99 | {ack.handler_p50:.1f}/{ack.handler_p99:.1f} ms, "
        f"{ack.ratio_p50:.2f}x/{ack.ratio_p99:.2f}x the floor ({ack.floor_p50:.1f}/{ack.floor_p99:.1f} ms) | "
        f"p50 <= {webhook_ack.TARGET_RATIO}x UpdateItem + SendMessage | {_met(ack.met)} |"
    )
    flow_row = (
        f"| Throughput ({flow.jobs} jobs on the local stack) | {flow.succeeded}/{flow.jobs} succeeded, "
        f"{flow.jobs_per_second:.2f} jobs/s, submit to notification p50 {flow.p50_ms / 1000:.1f} s, "
        f"p99 {flow.p99_ms / 1000:.1f} s | all succeed | {_met(flow.met)} |"
    )
    return [
        "| Benchmark | Figure | Target | Status |",
        "|---|---|---|---|",
        f"| Cold start | worst {worst} {cold.ratio(worst):.2f}x the boto3 floor ({met_count}/{len(cold.functions)} "
        f"functions within target) | <= {cold_start.TARGET_RATIO}x every function | "
        f"{_met(met_count == len(cold.functions))} |",
        f"| Cold start, as Lambda pays it (import + first invocation's clients) | worst {worst_ready} "
        f"{cold.ready_ratio(worst_ready):.2f}x `import boto3` + the same clients ({ready_met_count}/"
        f"{len(cold.functions)} functions within target) | <= {cold_start.TARGET_READY_RATIO}x every function | "
        f"{_met(ready_met_count == len(cold.functions))} |",
        f"| AWS calls per job | {calls.outside_part_uploads} outside part uploads ({calls.total} in all) | "
        f"<= {aws_calls.TARGET_CALLS} | {_met(calls.met)} |",
        f"| Finalize copy (1 GiB, RSS and throughput) | {_mib(copy.ours.peak_growth_bytes)} MiB peak RSS growth, "
        f"{copy.ratio:.2f}x upload_fileobj ({copy.ours.mb_per_s:.1f} vs {copy.upload_fileobj.mb_per_s:.1f} MB/s) | "
        f"<= {finalize_copy.TARGET_PEAK_GROWTH_BYTES // finalize_copy.MIB} MiB, >= {finalize_copy.TARGET_RATIO}x "
        f"upload_fileobj | {_met(copy.met)} |",
        f"| Finalize copy: tuned s3transfer (1 GiB) | {_mib(copy.s3transfer_tuned.peak_growth_bytes)} MiB peak RSS "
        f"growth, {copy.tuned_ratio:.2f}x ours | <= {finalize_copy.TARGET_PEAK_GROWTH_BYTES // finalize_copy.MIB} MiB "
        f"and >= {finalize_copy.TARGET_RATIO}x ours (to replace our store; docs/decisions.md) "
        f"| {_met(copy.tuned_meets_targets)} |",
        ack_row,
        flow_row,
        "",
    ]


def render(
    cold: cold_start.ColdStartResult,
    calls: aws_calls.AwsCallsResult,
    copy: finalize_copy.FinalizeCopyResult,
    ack: webhook_ack.WebhookAckResult,
    flow: throughput.ThroughputResult,
    *,
    when: datetime,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{COMMAND}` (`PYTHONPATH=layers/common:. .venv/bin/python -m bench.run`) on "
        f"{when:%Y-%m-%d %H:%M} UTC. Do not edit by hand: run `{COMMAND}` again. Figures are from one run on the "
        "machine below; compare ratios, not milliseconds, across machines. Each benchmark also runs alone and "
        f"prints its section (`python -m bench.run {' '.join(SECTIONS)}`, any of them).",
        "",
        "| Machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in _machine()),
        "",
        *_summary(cold, calls, copy, ack, flow),
        *_cold_start_section(cold),
        *_cold_start_plan(cold),
        *_aws_calls_section(calls),
        *_finalize_copy_section(copy),
        *_webhook_ack_section(ack),
        *_throughput_section(flow),
        "The failure suite (200 jobs with every fault of issue 6 at once) is a test, not a benchmark: "
        "`tests/e2e/test_failure_suite.py`, part of `make test`.",
        "",
    ]
    return "\n".join(lines)


def _finalize_copy() -> finalize_copy.FinalizeCopyResult:
    print(f"finalize copy: 1 GiB, each way {finalize_copy.RUNS} times, this takes a few minutes...", flush=True)
    copy = finalize_copy.measure()
    print(f"  finalize copy: {'; '.join(finalize_copy.describe(copy))}", flush=True)
    return copy


# Benchmarks that can also run alone (`python -m bench.run finalize_copy webhook_ack throughput`): their sections
# are printed, docs/benchmarks.md is left as it is.
SECTIONS: dict[str, Callable[[], list[str]]] = {
    "finalize_copy": lambda: _finalize_copy_section(_finalize_copy()),
    "webhook_ack": lambda: _webhook_ack_section(webhook_ack.measure()),
    "throughput": lambda: _throughput_section(throughput.measure()),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Runs the benchmarks and writes docs/benchmarks.md.")
    parser.add_argument("only", nargs="*", help=f"run these alone and print their sections: {', '.join(SECTIONS)}")
    only = parser.parse_args(argv).only
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (choose from {', '.join(SECTIONS)})")
    if only:
        for name in only:
            print(f"{name}...", file=sys.stderr, flush=True)
            print("\n".join(SECTIONS[name]()), flush=True)
        return
    print("cold start: fresh processes, this takes a minute...", flush=True)
    cold = cold_start.measure()
    print("AWS calls per job...", flush=True)
    calls = aws_calls.measure()
    copy = _finalize_copy()
    print(f"webhook acknowledgement: {webhook_ack.DELIVERIES:,} deliveries, a few minutes...", flush=True)
    ack = webhook_ack.measure()
    print(f"throughput: {throughput.JOBS} jobs on the local stack...", flush=True)
    flow = throughput.measure()
    REPORT.write_text(render(cold, calls, copy, ack, flow, when=datetime.now(UTC)))
    for name in cold.functions:
        print(f"  {name}: {cold.functions[name].min_ms:.1f} ms, {cold.ratio(name):.2f}x the boto3 floor")
    print(f"  AWS calls: {calls.outside_part_uploads} outside part uploads ({calls.total} in all)")
    print(f"  webhook acknowledgement: p50 {ack.handler_p50:.1f} ms, {ack.ratio_p50:.2f}x the floor")
    print(f"  throughput: {flow.succeeded}/{flow.jobs} succeeded, {flow.jobs_per_second:.2f} jobs/s")
    print(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
