"""Hooks on the learner's sockets: what they send and receive, and send() made to send
only part of what it is given, as a busy network may."""

from __future__ import annotations

import os
import socket
from typing import Any

from pytest_katas import schedule, trace
from pytest_katas.wrapping import from_learner, install_wrapper, patched

__all__ = ["install"]


# -- sockets ----------------------------------------------------------------------------------


def _sock_id(sock: socket.socket) -> str:
    try:
        return f"k{os.fstat(sock.fileno()).st_ino}"
    except (OSError, ValueError):
        return "k?"


def _patch_sockets() -> None:
    """A socket's peer may be anywhere, so a thread waiting on one never counts as stuck
    for good: socket calls are traced, but not shown in the status table. Only calls the
    learner's code makes itself are traced, not those of a library it called (urllib)."""
    cls = socket.socket
    if patched(cls, "send"):
        return
    c_send, c_sendall, c_recv = cls.send, cls.sendall, cls.recv
    c_recv_into, c_accept, c_shutdown, c_close = cls.recv_into, cls.accept, cls.shutdown, cls.close

    def send(self: socket.socket, data: Any, flags: int = 0) -> int:
        schedule.jitter(0.1, 0.001)
        where = trace.site() if trace.tracing() and from_learner(2) else -1
        if where < 0:
            return int(c_send(self, data, flags))
        view = memoryview(data)
        asked = view.nbytes
        if asked > 1 and trace.tracing():
            # send() may write only part of what it is given; the learner's must cope, so
            # it is made to happen here. sendall() is not touched: it loops by itself.
            view = view.cast("B")[: asked // 2]
        sent = int(c_send(self, view, flags))
        trace.access("ssend", _sock_id(self), [asked, sent], where)
        return sent

    def sendall(self: socket.socket, data: Any, flags: int = 0) -> None:
        schedule.jitter(0.1, 0.001)
        where = trace.site() if trace.tracing() and from_learner(2) else -1
        if where >= 0:
            trace.access("sendall", _sock_id(self), memoryview(data).nbytes, where)
        c_sendall(self, data, flags)

    def recv(self: socket.socket, bufsize: int, flags: int = 0) -> bytes:
        data = c_recv(self, bufsize, flags)
        where = trace.site() if trace.tracing() and from_learner(2) else -1
        if where >= 0:
            trace.access("srecv", _sock_id(self), [bufsize, len(data)], where)
        schedule.jitter(0.1, 0.001)
        return bytes(data)

    def recv_into(self: socket.socket, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        got = int(c_recv_into(self, buffer, nbytes, flags))
        schedule.jitter(0.1, 0.001)
        return got

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        conn, address = c_accept(self)
        where = trace.site() if trace.tracing() and from_learner(2) else -1
        if where >= 0:
            trace.access("accept", _sock_id(self), _sock_id(conn), where)
        return conn, address

    def shutdown(self: socket.socket, how: int) -> None:
        where = trace.site() if trace.tracing() and from_learner(2) else -1
        if where >= 0:
            trace.access("shutdown", _sock_id(self), how, where)
        c_shutdown(self, how)

    def close(self: socket.socket) -> None:
        where = trace.site() if trace.tracing() and from_learner(2) else -1
        if where >= 0 and not self._closed:  # type: ignore[attr-defined]
            trace.access("sclose", _sock_id(self), None, where)
        c_close(self)

    for name, wrapper in (
        ("send", send),
        ("sendall", sendall),
        ("recv", recv),
        ("recv_into", recv_into),
        ("accept", accept),
        ("shutdown", shutdown),
        ("close", close),
    ):
        install_wrapper(cls, name, wrapper)


def install() -> None:
    _patch_sockets()
