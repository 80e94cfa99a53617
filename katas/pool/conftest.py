"""A local web site for crawl(): served from the pytest process, on 127.0.0.1 only.

Pages:
  /bytes/<n>     200, a body of exactly n bytes
  /zh            200, Chinese text in UTF-8 (more bytes than characters)
  /chunked/<n>   200, n bytes sent in chunks (HTTP/1.1 chunked transfer encoding): no
                 Content-Length header, so only the bytes read() tell the length
  /missing       404 (so is any unknown page)
  /boom          500
  /stall         says nothing for STALL_LIMIT seconds (longer on a busy machine), twice
                 crawl's TIMEOUT; then, given up on, answers 200 "stalled"
  /stall-body    200 and a Content-Length of BODY_STALL_SIZE bytes at once, the first
                 BODY_STALL_SENT of them, then nothing for STALL_LIMIT seconds: urlopen()
                 returns, and read() must give up. Given up on, it sends the rest
  /meet/<n>/<i>  200 at once, then a dot every TRICKLE seconds (so no client times out)
                 until n /meet pages are being served at the same moment. Then the body ends.
                 If they are not all there within PATIENCE seconds, the meeting is broken:
                 this and every later /meet page end at once.
  /report        "met", "broken" or "waiting": how the meeting went
A dead address (a port bound but never listening) refuses connections.
"""

from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pytest_katas import patience

ZH_TEXT = "你好，世界。进程池里的每个进程都在等下一个任务。\n" * 20
PATIENCE = 2.0  # seconds on a quiet machine: see pytest_katas.patience
TRICKLE = 0.25
# A stalled page says nothing for this long (stretched like a deadline on a busy machine),
# twice crawl's TIMEOUT of 2 s: a fetch with a timeout has given up long before; one
# without would wait for ever, and gets the page instead, which the test tells apart.
STALL_LIMIT = 4.0
BODY_STALL_SIZE, BODY_STALL_SENT = 100, 10  # /stall-body's length, and what it sends of it


class _Meeting:
    """Counts /meet requests in flight; each waits for the rest, PATIENCE seconds at most."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.arrived = 0
        self.size = 0
        self.broken = False

    def attend(self, size: int, tick) -> None:
        """Wait until ``size`` attendees are here at once, calling tick() now and then."""
        deadline = time.monotonic() + patience(PATIENCE)
        with self.cond:
            self.size = size
            self.arrived += 1
            self.cond.notify_all()
            while not (self.broken or self.arrived >= size):
                left = deadline - time.monotonic()
                if left <= 0:
                    self.broken = True  # fetched one by one: the rest need not wait again
                    self.cond.notify_all()
                    break
                self.cond.wait(min(left, TRICKLE))
                tick()  # under the lock, but only this page's socket is touched

    def report(self) -> bytes:
        with self.cond:
            if self.broken:
                return b"broken"
            return b"met" if self.size and self.arrived >= self.size else b"waiting"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, body: bytes) -> None:
        self.protocol_version = "HTTP/1.1"  # chunked transfer encoding needs HTTP/1.1
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for start in range(0, len(body), 1000):
            piece = body[start : start + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = self.path.strip("/").split("/")
        try:
            if parts[0] == "bytes":
                self._send(200, b"x" * int(parts[1]))
            elif parts[0] == "chunked":
                self._send_chunked(b"x" * int(parts[1]))
            elif parts[0] == "zh":
                self._send(200, ZH_TEXT.encode("utf-8"), "text/plain; charset=utf-8")
            elif parts[0] == "boom":
                self.send_error(500, "the page broke")
            elif parts[0] == "empty":  # an answer, and no error, but not a 200
                self._send(204, b"")
            elif parts[0] == "stall":  # say nothing; the client must give up first
                if not self.server.stop.wait(patience(STALL_LIMIT)):
                    self._send(200, b"stalled")
            elif parts[0] == "stall-body":  # headers and a little, then the client gives up
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(BODY_STALL_SIZE))
                self.end_headers()
                self.wfile.write(b"x" * BODY_STALL_SENT)
                self.wfile.flush()
                if not self.server.stop.wait(patience(STALL_LIMIT)):
                    self.wfile.write(b"x" * (BODY_STALL_SIZE - BODY_STALL_SENT))
            elif parts[0] == "meet":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()  # no Content-Length: the body ends when we close
                self.wfile.write(b".")
                self.wfile.flush()
                self.server.meeting.attend(int(parts[1]), lambda: self.wfile.write(b"."))
                self.wfile.write(b"!")
            elif parts[0] == "report":
                self._send(200, self.server.meeting.report())
            else:
                self.send_error(404, "no such page")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler: nothing outlives the test

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.stop = threading.Event()
        self.meeting = _Meeting()


@dataclasses.dataclass(frozen=True)
class Site:
    base: str
    dead: str  # a URL whose port refuses every connection
    zh_text: str = dataclasses.field(default=ZH_TEXT, repr=False)
    stall_limit: float = STALL_LIMIT  # how long /stall says nothing, on a quiet machine
    body_stall: tuple[int, int] = (BODY_STALL_SENT, BODY_STALL_SIZE)  # /stall-body sends a of b

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def site() -> Iterator[Site]:
    server = _Server()
    # Polled often, so that shutdown() at the end of each test returns at once (the default
    # half second, over every test of the kata, is seconds of waiting).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="kata-site", daemon=True
    )
    thread.start()
    # Bound but never listening: connecting is refused, and no one else can take the port.
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))
    host, port = server.server_address[:2]
    try:
        yield Site(f"http://{host}:{port}", f"http://127.0.0.1:{dead.getsockname()[1]}/")
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()
        dead.close()
