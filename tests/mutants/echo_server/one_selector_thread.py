"""MUTANT: one thread serves every client with a selector (no thread per client): it echoes
fine and stops cleanly, but the contract asks for a thread of its own for each client.

expect: contract
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
        self._loop: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    def start(self) -> tuple[str, int]:
        self._listener = socket.create_server(self._address)
        self._wake_r, self._wake_w = socket.socketpair()
        self._loop = threading.Thread(target=self._serve_all, name="echo-selector")
        self._loop.start()
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _serve_all(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        clients: list[socket.socket] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            running = True
            while running:
                for key, _ in selector.select():
                    sock = key.fileobj
                    if sock is self._wake_r:
                        running = False
                    elif sock is self._listener:
                        conn, _ = self._listener.accept()
                        clients.append(conn)
                        selector.register(conn, selectors.EVENT_READ)
                    else:
                        assert isinstance(sock, socket.socket)
                        try:
                            data = sock.recv(_CHUNK)
                            if data:
                                sock.sendall(data)
                        except OSError:
                            data = b""
                        if not data:
                            selector.unregister(sock)
                            clients.remove(sock)
                            sock.close()
            for conn in clients:
                conn.close()

    def stop(self) -> None:
        if self._loop is None:
            return
        assert self._wake_w is not None and self._listener is not None
        self._wake_w.send(b"x")
        self._loop.join()
        self._listener.close()
        self._wake_r.close()  # type: ignore[union-attr]
        self._wake_w.close()
        self._loop = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
