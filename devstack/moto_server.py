"""moto in server mode on a free loopback port: `python -m devstack.moto_server` (see processes.py)."""

import functools
import logging
import os

import boto3
from moto import backends
from moto.server import ThreadedMotoServer

from devstack.cloudformation import REGION
from devstack.moto_atomicity import make_dynamodb_writes_atomic
from devstack.processes import serve_until_stdin_closes

# moto spills every object and part over 5 MiB to a temporary file and reads it back to complete an upload;
# in memory (this process's, not the test's) a 256 MiB upload completes about twice as fast.
IN_MEMORY_OBJECT_BYTES = 1024**3
# What moto accepts; fixed, so nothing that talks to the local stack ever reads a real AWS profile's keys.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def local_session() -> boto3.Session:
    """A session for clients of the local moto (give them its endpoint_url): fake keys, the stack's region."""
    return boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=REGION,
    )


def _make_request_routing_cheap() -> None:
    """moto 5.2.5 lists its package folder (a listdir and ~150 stats) to route every request, under a lock that
    serializes all requests; the folders do not change while it runs. Its access log (a line per request) goes."""
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = functools.cache(lambda: modules)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main() -> None:
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(IN_MEMORY_OBJECT_BYTES))
    # The server answers each request in its own thread: conditional writes must not race (see moto_atomicity).
    make_dynamodb_writes_atomic()
    _make_request_routing_cheap()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    serve_until_stdin_closes(port)  # then the process ends, and the server's daemon threads with it


if __name__ == "__main__":
    main()
