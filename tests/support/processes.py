"""Servers in child processes, for tests that must not share memory (or the GIL) with what they measure.

Each server module prints the loopback port it listens on as its first line of output, and exits when its
standard input closes, so a child outlives neither the test that stopped it nor a test run that died.
"""

import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0


class ServerDidNotStart(Exception):
    pass


def _read_port(process: subprocess.Popen[bytes], log: Path) -> int:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_SECONDS)
    line = process.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        raise ServerDidNotStart(f"no port within {START_TIMEOUT_SECONDS} s; its log:\n{log.read_text()[-4000:]}")
    return int(line)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Closes the child's stdin (its signal to exit), then terminates, then kills it; always waits for it."""

    def close_stdin() -> None:
        if process.stdin is not None:
            process.stdin.close()

    steps: tuple[Callable[[], None], ...] = (close_stdin, process.terminate, process.kill)
    for step in steps:
        if process.poll() is not None:
            break
        step()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def server_process(module: str, *args: str, log: Path) -> Iterator[str]:
    """Runs `python -m module args` from the repository root; yields `http://127.0.0.1:<port>`."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603  # our own interpreter and module
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
        try:
            yield f"http://127.0.0.1:{_read_port(process, log)}"
        finally:
            stop(process)


def serve_until_stdin_closes(port: int) -> None:
    """Announces the port to the parent, then blocks until the parent closes our stdin (or dies)."""
    print(port, flush=True)
    sys.stdin.buffer.read()
