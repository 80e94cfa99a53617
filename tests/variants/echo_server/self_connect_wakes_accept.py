"""VARIANT: the accept loop blocks in plain accept(); stop() sets a flag and connects to its own
port, so that accept() returns and the loop sees the flag. Client threads read with recv_into()
into a buffer of their own and echo a memoryview of it (recv_into is not in the trace).
"""

from __future__ import annotations

import socket
import threading


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._stopping = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> tuple[str, int]:
        self._stopping = False
        self._listener = socket.socket()
        self._listener.bind(self._address)
        self._listener.listen()
        self._accepter = threading.Thread(target=self._accept_loop)
        self._accepter.start()
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            conn, _ = self._listener.accept()
            if self._stopping:  # stop()'s own knock, or a client that came too late
                conn.close()
                return
            with self._lock:
                self._open.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,))
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray(32 * 1024)
        view = memoryview(buffer)
        try:
            while True:
                size = conn.recv_into(buffer)
                if size == 0:
                    break
                conn.sendall(view[:size])
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
                conn.close()

    def stop(self) -> None:
        if self._accepter is None or self._listener is None:
            return
        self._stopping = True
        socket.create_connection(self._listener.getsockname()[:2]).close()
        self._accepter.join()  # no client thread can be added after this
        self._listener.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._accepter = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
