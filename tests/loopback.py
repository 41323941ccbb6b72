"""A threaded HTTP server on 127.0.0.1 for the test servers that speak OpenAI's wire format."""

import threading
from http.server import ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of concurrent connections
    # overflows it and the dropped SYNs are retried a full second later.
    request_queue_size = 128
    daemon_threads = True


class LoopbackServer:
    """Serves ``handler`` (a ``BaseHTTPRequestHandler`` class) on a free port while used as a context manager."""

    def serve(self, handler) -> None:
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
