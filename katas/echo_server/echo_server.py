"""Kata 5: a threaded echo server that many clients can use at once, and that stops cleanly.

Read README.md first. Fill in the class below, then run:

    pytest katas/echo_server

Use ``socket`` for the network and ``threading`` for concurrency: one thread accepts
connections, and every client gets a thread of its own. Listen on the address you are
given: the tests pass 127.0.0.1 and mostly port 0, which lets the system pick a free port
(a test that must know the port before start() passes a free one it found).
"""

from __future__ import annotations

import socket  # noqa: F401 - you will need it
import threading  # noqa: F401 - you will need it


class EchoServer:
    """A TCP server that sends every byte it receives straight back to its sender.

    ``EchoServer(host="127.0.0.1", port=0)`` only remembers the address; nothing listens
    until ``start()``. It is also a context manager: ``with EchoServer() as srv:`` starts
    the server on entering the block and stops it on leaving, even after an exception.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Remember where to listen. Do not open any socket yet."""
        raise NotImplementedError

    def start(self) -> tuple[str, int]:
        """Bind, listen, start accepting in a thread, and return ``(host, port)``.

        - Return the address actually bound (with port 0, the port the system chose),
          only once the server is ready: a client may connect as soon as this returns.
        - Listen with a backlog big enough for 50+ clients connecting at once.
        - Serve every client in a thread of its own, started for it once it is accepted,
          so that a slow or silent client never holds up the others.
        - Echo every byte, whatever its value, in order, however much the client sends:
          one ``recv()`` returns a chunk of what was sent, not a whole message, so keep
          receiving. Echo each chunk as soon as it arrives (the client may wait for the
          answer before sending more), and make sure all of it is sent.
        - When the client closes or half-closes its side (``recv()`` returns ``b""``),
          close that connection.
        """
        raise NotImplementedError

    def stop(self) -> None:
        """Stop accepting, close every connection, join every thread; within 2 seconds.

        - Afterwards the port refuses new connections.
        - Connected clients, including idle ones that never send anything, see their
          connection closed (end of file, or a reset).
        - Every thread the server started has been joined: none is still running when
          ``stop()`` returns. Beware: a thread blocked in ``accept()`` or ``recv()`` does
          not wake up when another thread calls ``close()`` on that socket.
        """
        raise NotImplementedError

    def __enter__(self) -> EchoServer:
        """Start the server and return it."""
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        raise NotImplementedError
