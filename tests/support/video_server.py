"""A loopback HTTP server of generated videos: `python -m tests.support.video_server --size N [--seed S]`.

`GET /video.mp4` streams `size` bytes of generated_video with Content-Length and Content-Type video/mp4.
`GET /broken.mp4` promises the same but drops the connection after `--drop-after` bytes, like a provider's
CDN failing in the middle. Each body is generated as it is sent: the server never holds it whole either.
"""

import argparse
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack.processes import serve_until_stdin_closes
from tests.support.generated_video import generated_chunks


def handler_for(size: int, seed: int, drop_after: int) -> type[BaseHTTPRequestHandler]:
    class VideoHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            limits = {"/video.mp4": size, "/broken.mp4": drop_after}
            if self.path not in limits:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            for chunk in generated_chunks(size, seed):
                part = chunk[: limits[self.path] - sent]
                self.wfile.write(part)
                sent += len(part)
                if sent >= limits[self.path]:
                    break
            if sent < size:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads no access log
            pass

    return VideoHandler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drop-after", type=int, default=0)
    options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(options.size, options.seed, options.drop_after))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    serve_until_stdin_closes(server.server_address[1])  # then the process ends, and the daemon threads with it


if __name__ == "__main__":
    main()
