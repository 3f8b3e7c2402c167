"""Servers in child processes: the local stack's moto, functions and emulators, and tests' own servers.

Each server module prints the loopback port it listens on as its first line of output, and exits when its
standard input closes, so a child outlives neither the parent that stopped it nor a parent that died.
Children run in their own process group: Ctrl-C in a terminal reaches only the parent, which then stops
them in order (an invocation in flight finishes or is cut by the parent, never by a stray SIGINT).
"""

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, TextIO

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0


class ServerDidNotStart(Exception):
    pass


@dataclass
class ChildServer:
    """A started child: `url` once it has announced its port (see wait_until_serving)."""

    module: str
    process: subprocess.Popen[bytes]
    log: Path
    _log_file: BinaryIO
    url: str = field(default="")

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_serving(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """Reads the announced port; a child that exits or stays silent is stopped and reported with its log."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise ServerDidNotStart(
                f"{self.module}: no port within {timeout} s; its log:\n{self.log.read_text(errors='replace')[-4000:]}"
            )
        self.url = f"http://127.0.0.1:{int(line)}"
        return self.url

    def stop(self) -> None:
        stop_all([self])


def launch(
    module: str, *args: str, log: Path, env: Mapping[str, str] | None = None, append_log: bool = False
) -> ChildServer:
    """Starts `python -m module args` from the repository root, its stderr into `log`; does not wait for it.

    `append_log`: after what `log` holds (a restarted child), instead of a new log.
    """
    log_file = log.open("ab" if append_log else "wb")
    try:
        process = subprocess.Popen(  # noqa: S603  # our own interpreter and module
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=dict(env) if env is not None else None,
            process_group=0,
        )
    except BaseException:
        log_file.close()
        raise
    return ChildServer(module, process, log, log_file)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Closes the child's stdin (its signal to exit), then terminates, then kills it; always waits for it."""
    stop_processes([process])


def stop_processes(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """stop() for several children at once: each step for all of them, so stopping takes one timeout, not one each."""
    processes = list(processes)

    def close_stdin(process: subprocess.Popen[bytes]) -> None:
        if process.stdin is not None:
            process.stdin.close()

    steps: tuple[Callable[[subprocess.Popen[bytes]], None], ...] = (
        close_stdin,
        subprocess.Popen.terminate,
        subprocess.Popen.kill,
    )
    for step in steps:
        running = [process for process in processes if process.poll() is None]
        if not running:
            break
        for process in running:
            step(process)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue
    for process in processes:
        process.wait()  # after a kill, promptly: never leave a zombie behind
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def stop_all(children: Iterable[ChildServer]) -> None:
    """Stops the children together (see stop_processes) and closes their logs."""
    children = list(children)
    try:
        stop_processes(child.process for child in children)
    finally:
        for child in children:
            child._log_file.close()


@contextmanager
def server_process(module: str, *args: str, log: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Runs `python -m module args` from the repository root; yields `http://127.0.0.1:<port>`."""
    child = launch(module, *args, log=log, env=env)
    try:
        yield child.wait_until_serving()
    finally:
        child.stop()


def redirect_stdout_to_log() -> TextIO:
    """Points file descriptor 1 at stderr (the child's log) and returns a stream on the original stdout.

    The parent reads only the first line of our stdout: anything printed later (Powertools logs its JSON
    there) would fill the pipe and block us. Call it before importing code that may print.
    """
    sys.stdout.flush()
    announcer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return announcer


def serve_until_stdin_closes(port: int, announcer: IO[str] | None = None) -> None:
    """Announces the port to the parent, then blocks until the parent closes our stdin (or dies)."""
    stream = announcer if announcer is not None else redirect_stdout_to_log()
    print(port, file=stream, flush=True)
    stream.close()
    sys.stdin.buffer.read()
