"""The README's quick start runs as written: its shell block, word for word, against `make up`'s stack.

`make up` is `python -m devstack up`; it runs here as it would in the reader's other terminal (its env file in a
scratch copy of the checkout's layout, so the block's relative paths hold and nothing lands in the checkout).
"""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.polling import eventually

ROOT = Path(__file__).resolve().parents[2]
STACK_START_SECONDS = 120
BLOCK_SECONDS = 300


def quick_start_block() -> str:
    """The first sh block of the README's section on the CLI."""
    section = ROOT.joinpath("README.md").read_text().split("\n## The client CLI\n", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's CLI section has no sh block"
    return match.group(1)


@pytest.fixture
def reader_checkout(tmp_path: Path) -> Path:
    """Where the reader stands: the checkout's venv and assets, and an out/ of its own."""
    for name in (".venv", "devstack"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@contextmanager
def make_up(checkout: Path, *options: str) -> Iterator[Path]:
    """`make up` in the reader's other terminal: yields its env file once written, then stops it as Ctrl-C does."""
    env_file = checkout / "out" / "local-stack.env"
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "devstack", "up", "--env-file", str(env_file), *options]
    log = checkout / "make-up.log"
    with log.open("wb") as output:
        stack = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            eventually(
                lambda: stack.poll() is not None or "AVATARJOBS_API_KEY=" in _text_of(env_file),
                timeout=STACK_START_SECONDS,
                waiting_for="make up's env file",
            )
            assert stack.poll() is None, log.read_text()
            yield env_file
        finally:
            stack.send_signal(signal.SIGINT)
            assert stack.wait(timeout=60) == 0, log.read_text()


def _text_of(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def test_the_readme_quick_start_runs_as_written_and_leaves_the_video_in_out(reader_checkout: Path) -> None:
    script = "set -euo pipefail\n" + quick_start_block()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AVATARJOBS_")}

    with make_up(reader_checkout, "--log-dir", str(reader_checkout / "logs")) as env_file:
        run = subprocess.run(  # noqa: S603 - the README's own block
            ["/bin/bash", "-c", script],
            check=False,
            cwd=reader_checkout,
            env=clean,
            capture_output=True,
            text=True,
            timeout=BLOCK_SECONDS,
        )
        assert env_file.stat().st_mode & 0o077 == 0  # the key in it is readable by its user only

    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    [video] = (reader_checkout / "out").glob("*.mp4")
    assert video.read_bytes()[4:8] == b"ftyp"
    assert video.stem in run.stdout  # `list --status SUCCEEDED` shows the job it made


def test_make_up_removes_its_env_file_when_it_stops(reader_checkout: Path) -> None:
    with make_up(reader_checkout, "--no-emulators") as env_file:
        assert env_file.is_file()
    assert not env_file.exists()
