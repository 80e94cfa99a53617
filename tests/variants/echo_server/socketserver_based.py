"""VARIANT: built on socketserver.ThreadingTCPServer, with a table of live requests to shut down.

socketserver already runs a thread per request and joins them in server_close(); what it
does not do is wake a handler blocked in recv(), so stop() shuts those connections down first.
"""

from __future__ import annotations

import socket
import socketserver
import threading


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while chunk := self.request.recv(65536):
                self.request.sendall(chunk)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # keep the request threads so that server_close() joins them
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int]) -> None:
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        # Runs in the serve_forever() thread, before the request's thread starts: once
        # serve_forever() has returned, every accepted connection is in the table.
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._live_lock:  # leave the table before socketserver closes the socket
            self._live.discard(request)
        super().shutdown_request(request)

    def shut_down_clients(self) -> None:
        with self._live_lock:
            for conn in self._live:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: _Server | None = None
        self._loop: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        self._server = _Server(self._address)
        self._loop = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._loop.start()
        host, port = self._server.server_address[:2]
        return host, port

    def stop(self) -> None:
        if self._server is None or self._loop is None:
            return
        self._server.shutdown()  # serve_forever() returns: nothing new is accepted
        self._loop.join()
        self._server.shut_down_clients()  # wakes every handler blocked in recv()
        self._server.server_close()  # closes the listener, joins every request thread
        self._server = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
