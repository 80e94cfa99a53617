"""VARIANT: two threads per client, both started when it is accepted: one receives and puts each
chunk on a queue, the other takes the chunks off and sends them back (the thread-per-client
check allows more than one thread per client, as long as none serves two). The accept loop
waits in a selector that also watches a wake-up socket pair.
"""

from __future__ import annotations

import queue
import selectors
import socket
import threading


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> tuple[str, int]:
        self._listener = socket.create_server(self._address, backlog=100)
        self._wake_r, self._wake_w = socket.socketpair()
        self._accepter = threading.Thread(target=self._accept_loop, name="accepter")
        self._accepter.start()
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                if any(key.fileobj is self._wake_r for key, _ in selector.select()):
                    return
                conn, _ = self._listener.accept()
                chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
                pair = [
                    threading.Thread(target=self._receive, args=(conn, chunks), name="reader"),
                    threading.Thread(target=self._send, args=(conn, chunks), name="writer"),
                ]
                with self._lock:
                    self._open.add(conn)
                    self._threads.extend(pair)
                for thread in pair:
                    thread.start()

    def _receive(self, conn: socket.socket, chunks: queue.SimpleQueue[bytes | None]) -> None:
        try:
            while data := conn.recv(1 << 16):
                chunks.put(data)
        except OSError:
            pass
        finally:
            chunks.put(None)  # the writer closes the connection when it is done

    def _send(self, conn: socket.socket, chunks: queue.SimpleQueue[bytes | None]) -> None:
        try:
            while (data := chunks.get()) is not None:
                conn.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
                conn.close()

    def stop(self) -> None:
        if self._accepter is None:
            return
        assert self._wake_w is not None and self._listener is not None
        self._wake_w.send(b"!")
        self._accepter.join()
        self._listener.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # the reader's recv() returns b""
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self._wake_r.close()  # type: ignore[union-attr]
        self._wake_w.close()
        self._accepter = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
