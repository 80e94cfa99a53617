"""VARIANT: no selectors and no shutdown(): every blocking call has a short timeout, and each
thread checks a stop Event between tries.

Simple and portable; the price is that stop() takes up to one polling interval per thread
(they poll in parallel, so about 0.1 s in all).
"""

from __future__ import annotations

import socket
import threading

_POLL = 0.1  # seconds between two looks at the stop flag


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._accepter: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        self._stop.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self._address)
        listener.listen(128)
        listener.settimeout(_POLL)  # accept() gives up every _POLL s to look at the flag
        self._listener = listener
        self._accepter = threading.Thread(target=self._accept_loop, daemon=False)
        self._accepter.start()
        return listener.getsockname()[:2]

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            # Only this thread adds threads, and stop() reads the list after joining it.
            self._threads = [t for t in self._threads if t.is_alive()]
            worker = threading.Thread(target=self._serve, args=(conn,))
            self._threads.append(worker)
            worker.start()

    def _send_all(self, conn: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            try:
                sent = conn.send(view)
            except TimeoutError:
                if self._stop.is_set():
                    return False
                continue
            view = view[sent:]
        return True

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(_POLL)
            try:
                while not self._stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not data or not self._send_all(conn, data):
                        break
            except OSError:
                pass

    def stop(self) -> None:
        if self._accepter is None or self._listener is None:
            return
        self._stop.set()
        self._accepter.join()
        self._listener.close()
        for worker in self._threads:
            worker.join()  # each notices the flag within _POLL s and closes its socket
        self._threads.clear()
        self._accepter = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
