"""VARIANT: the accept loop blocks in plain accept(); stop() wakes it with shutdown() on the
listening socket (Linux reports EINVAL to the blocked accept), and each client is a Thread
subclass that owns its connection.
"""

from __future__ import annotations

import socket
import threading


class _Client(threading.Thread):
    def __init__(self, conn: socket.socket) -> None:
        super().__init__(name="echo-client")
        self.conn = conn
        self._lock = threading.Lock()
        self._closed = False

    def run(self) -> None:
        try:
            while True:
                data = self.conn.recv(1 << 16)
                if not data:
                    break
                self.conn.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._closed = True
                self.conn.close()

    def hang_up(self) -> None:
        with self._lock:  # never touch a socket that run() already closed
            if not self._closed:
                try:
                    self.conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._clients: list[_Client] = []
        self._acceptor: threading.Thread | None = None
        self._stopping = False

    def start(self) -> tuple[str, int]:
        self._sock = socket.create_server((self.host, self.port), backlog=128)
        self._acceptor = threading.Thread(target=self._accept_forever, name="echo-accept")
        self._acceptor.start()
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _accept_forever(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping:
                    return
                continue  # e.g. ECONNABORTED: a client gave up before we took it
            if self._stopping:
                conn.close()
                return
            client = _Client(conn)
            self._clients = [c for c in self._clients if c.is_alive()]
            self._clients.append(client)
            client.start()

    def stop(self) -> None:
        if self._acceptor is None or self._sock is None:
            return
        self._stopping = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # the blocked accept() now fails
        except OSError:
            pass
        self._acceptor.join()
        self._sock.close()
        for client in self._clients:  # the acceptor is gone: this list is final
            client.hang_up()
        for client in self._clients:
            client.join()
        self._clients = []
        self._acceptor = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
