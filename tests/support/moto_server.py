"""moto in server mode on a free loopback port: `python -m tests.support.moto_server` (see processes.py)."""

import os

from moto.server import ThreadedMotoServer

from tests.support.processes import serve_until_stdin_closes

# moto spills every object and part over 5 MiB to a temporary file and reads it back to complete an upload;
# in memory (this process's, not the test's) a 256 MiB upload completes about twice as fast.
IN_MEMORY_OBJECT_BYTES = 1024**3


def main() -> None:
    os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(IN_MEMORY_OBJECT_BYTES))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    serve_until_stdin_closes(port)  # then the process ends, and the server's daemon threads with it


if __name__ == "__main__":
    main()
