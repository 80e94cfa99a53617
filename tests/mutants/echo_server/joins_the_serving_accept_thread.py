"""MUTANT: the accept thread serves each client itself, and stop() joins it before it shuts
the connections down: the join waits for an idle client that never speaks.

expect: hang, slow
clause: C5
"""

from __future__ import annotations

import selectors
import socket
import threading

_CHUNK = 64 * 1024


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []

    def start(self) -> tuple[str, int]:
        self._listener = socket.create_server(self._address)
        self._wake_r, self._wake_w = socket.socketpair()
        self._accepter = threading.Thread(target=self._accept_loop, name="echo-accept")
        self._accepter.start()
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    continue
                with self._lock:
                    self._clients.append(conn)
                self._serve(conn)  # the bug: served here, so accepting waits for this client

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(_CHUNK)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                if conn in self._clients:
                    self._clients.remove(conn)
            conn.close()

    def stop(self) -> None:
        if self._accepter is None:
            return
        assert self._wake_w is not None and self._listener is not None
        self._wake_w.send(b"x")
        self._accepter.join()  # waits for the client being served in that thread
        self._listener.close()
        with self._lock:
            for conn in self._clients:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._wake_r.close()  # type: ignore[union-attr]
        self._wake_w.close()
        self._accepter = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
