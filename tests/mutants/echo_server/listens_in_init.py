"""MUTANT: the constructor already opens, binds and listens; start() only starts the accept loop.

expect: contract
clause: C1
"""

from __future__ import annotations

import selectors
import socket
import threading

_CHUNK = 64 * 1024


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._listener: socket.socket | None = socket.create_server(self._address)
        self._accepter: threading.Thread | None = None
        # A socket pair whose only job is to wake the accept loop: a thread blocked in
        # accept() does not notice that another thread closed the listening socket.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock = threading.Lock()  # guards the two tables below
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._finished: list[threading.Thread] = []

    def start(self) -> tuple[str, int]:
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
                    return  # stop() asked us to go
                try:
                    conn, _ = self._listener.accept()
                except OSError:  # pragma: no cover - a race no test can time: see below
                    continue  # the client gave up between select() and accept()
                with self._lock:
                    self._finished = [t for t in self._finished if t.is_alive()]
                    # One thread per client: a slow client blocks only its own thread.
                    thread = threading.Thread(target=self._serve, args=(conn,), name="echo-client")
                    self._clients[conn] = thread
                    thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(_CHUNK)  # a chunk, not a message: loop until EOF
                if not data:  # b"": the client closed or half-closed its side
                    break
                conn.sendall(data)  # send() may write only part; sendall() writes it all
        except OSError:  # pragma: no cover - the tests' clients close, they never reset
            pass  # the client reset the connection, or stop() shut it down under us
        finally:
            with self._lock:
                # Leave the table before closing, so that stop() never shuts down a socket
                # whose descriptor number may already belong to someone else.
                self._clients.pop(conn, None)
                self._finished.append(threading.current_thread())
            conn.close()

    def stop(self) -> None:
        if self._accepter is None:  # pragma: no cover - stop() before start(): not in the contract
            return
        assert self._wake_w is not None and self._listener is not None
        self._wake_w.send(b"x")
        self._accepter.join()  # from here on no new client thread can appear
        self._listener.close()  # the port now refuses connections
        with self._lock:
            for conn in self._clients:
                # close() would not wake a thread blocked in recv() on this socket;
                # shutdown() does: its recv() returns b"" and the thread ends.
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:  # pragma: no cover - a reset racing stop(): no test can time it
                    pass  # the client already went away
            threads = [*self._clients.values(), *self._finished]
        for thread in threads:  # join outside the lock: each thread needs it to leave
            thread.join()
        self._wake_r.close()  # type: ignore[union-attr]
        self._wake_w.close()
        self._accepter = None

    def __enter__(self) -> EchoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
