"""`python -m devstack up`: the local stack until Ctrl-C (or SIGTERM), which stops every process it started.

It prints the API's base URL and the local API key as shell exports (the CLI reads them), then where moto,
the logs and the child processes are. It also writes the exports to an env file (default out/local-stack.env) while
it runs, so another shell, or the README's quick start, can `. out/local-stack.env`.
"""

import argparse
import importlib.util
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devstack.stack import LocalStack


def _emulators_available() -> bool:
    return all(importlib.util.find_spec(f"devstack.emulators.{name}") is not None for name in ("fal", "mirako"))


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the local stack until Ctrl-C")
    up.add_argument(
        "--emulators",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the fal and Mirako emulators (default: when devstack.emulators is there)",
    )
    up.add_argument(
        "--schedule-seconds", type=float, help="period of the reconciler (default: DEVSTACK_SCHEDULE_SECONDS)"
    )
    up.add_argument("--log-dir", type=Path, help="where each process logs (default: a new temporary folder)")
    up.add_argument("--api-key", help="the local API key (default: a new random one)")
    up.add_argument(
        "--env-file",
        type=Path,
        default=Path("out/local-stack.env"),
        help="where to write the exports while the stack runs (default: %(default)s; removed when it stops)",
    )
    return parser.parse_args(argv)


def up(options: argparse.Namespace) -> int:
    stop_requested = threading.Event()

    def request_stop(signal_number: int, _: FrameType | None) -> None:
        stop_requested.set()

    # Set before starting: a Ctrl-C during the start lets it finish, then everything stops in order.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    emulators = _emulators_available() if options.emulators is None else options.emulators
    local = LocalStack(
        emulators=emulators, schedule_seconds=options.schedule_seconds, log_dir=options.log_dir, api_key=options.api_key
    )
    try:
        local.start()
        print(local.client_exports, end="")
        options.env_file.parent.mkdir(parents=True, exist_ok=True)
        # Written once the stack answers, so a script may wait for the file and then use the API.
        options.env_file.touch(mode=0o600)  # the key is the stack's: readable by its user only
        options.env_file.write_text(local.client_exports)
        print(f"# exports also in {options.env_file}")
        print(f"# moto endpoint: {local.endpoint_url}")
        print(f"# provider emulators: {'on' if emulators else 'off'}")
        print(f"# logs: {local.log_dir}")
        print(f"# child pids: {' '.join(str(pid) for pid in local.child_pids)}")
        print("# Ctrl-C stops the stack", flush=True)
        stop_requested.wait()
        print("# stopping", flush=True)
    finally:
        options.env_file.unlink(missing_ok=True)  # its key and URL die with the stack
        local.stop()
    print("# stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    options = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("devstack").setLevel(logging.INFO)  # our own news; libraries only when something is wrong
    return up(options)


if __name__ == "__main__":
    sys.exit(main())
