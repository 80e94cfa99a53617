"""Tests for the echo_server kata. Each test checks one clause of the contract in echo_server.py.

Every client socket here has a timeout, so a server that never answers fails a test instead of
hanging it, and every socket and thread the tests open is closed or joined before they return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import linecache
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pytest_katas import fail_as, learner_side, observed

MIB = 1 << 20
WAIT = 4.0  # how long a client waits for the server before it counts as stuck (s)
SLICE = 0.5  # while it waits, it looks at the trace this often (s)
SETTLE = 1.0  # how long a new idle client may take to get its server thread (s)
STOP_LIMIT = 2.0  # the contract: stop() returns within 2 s
CLIENTS = 60


# -- helpers -----------------------------------------------------------------------------


def _connect(addr: tuple[str, int], timeout: float = WAIT) -> socket.socket:
    return socket.create_connection(addr, timeout=timeout)


@contextlib.contextmanager
def _running(kata) -> Iterator[tuple[object, tuple[str, int]]]:
    """A started server and its address; stopped on the way out."""
    server = kata.EchoServer("127.0.0.1", 0)
    addr = server.start()
    try:
        yield server, addr
    finally:
        server.stop()


@dataclasses.dataclass
class Reply:
    data: bytes
    end: str  # "eof" (clean close), "reset" (connection reset) or "timeout"


def _recv(sock: socket.socket, size: int, look: Callable[[], None] | None = None) -> bytes:
    """``sock.recv(size)`` within the socket's timeout. While nothing comes, ``look()`` runs
    every ``SLICE`` s: it fails the test at once when the trace already shows why nothing
    will, so that a broken server costs a fraction of the wait instead of all of it."""
    limit = sock.gettimeout()
    if look is None or limit is None:
        return sock.recv(size)
    waited = 0.0
    sock.settimeout(min(SLICE, limit))
    try:
        while True:
            try:
                return sock.recv(size)
            except TimeoutError:
                waited += SLICE
                look()
                if waited >= limit:
                    raise
    finally:
        sock.settimeout(limit)


def _read_to_end(sock: socket.socket, kata=None, who: str = "the client") -> Reply:
    chunks: list[bytes] = []
    look = (lambda: _fail_if_spinning(kata, who)) if kata is not None else None
    try:
        while True:
            chunk = _recv(sock, 256 * 1024, look)
            if not chunk:
                return Reply(b"".join(chunks), "eof")
            chunks.append(chunk)
    except TimeoutError:
        return Reply(b"".join(chunks), "timeout")
    except OSError:
        return Reply(b"".join(chunks), "reset")


def _send_then_half_close(sock: socket.socket, payload: bytes) -> None:
    """Send everything, then shutdown(SHUT_WR): "I have nothing more to say"."""
    try:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server already hung up; reading the reply shows what came back


def _exchange(addr: tuple[str, int], payload: bytes, kata=None, who: str = "the client") -> Reply:
    """Send ``payload`` then half-close, from a helper thread, while reading everything back.

    Sending and reading at once matters: with a big payload, a client that only reads after
    sending would fill both directions' buffers and wait for ever, even on a good server.
    """
    with _connect(addr) as sock:
        sender = threading.Thread(
            target=_send_then_half_close, args=(sock, payload), name="test-sender"
        )
        sender.start()
        try:
            reply = _read_to_end(sock, kata, who)
        finally:
            if sender.is_alive():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a sender stuck in sendall()
            sender.join()
    return reply


# -- what only the server's own process can see ------------------------------------------
# While grading, the server runs in a process of its own: these helpers run there
# (@learner_side) and answer with plain data.


def _waits_in_recv(ident: int) -> bool:
    """Whether the thread ``ident`` is blocked in recv() right now: its live stack is in the
    trace's recv() wrapper, on the very line that calls the real recv() (not after it
    returned, while the chunk it got is still on its way to the learner's code)."""
    frame = sys._current_frames().get(ident)
    while frame is not None:
        code = frame.f_code
        if code.co_name in ("recv", "recv_into") and frame.f_globals.get("__name__", "").startswith(
            "pytest_katas"
        ):
            return "c_recv" in linecache.getline(code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return False


@learner_side
def _in_recv(kata, idents: list[int]) -> list[int]:
    """Which of the server's threads ``idents`` (from the trace) are blocked in recv() now."""
    return [ident for ident in idents if _waits_in_recv(ident)]


def _blocked_in_recv(kata, idents: list[int]) -> set[int]:
    """_in_recv(), without asking at all when there is nobody to ask about."""
    return set(_in_recv(kata, sorted(set(idents)))) if idents else set()


_MARKS: list[set[threading.Thread]] = []  # the threads alive at each _mark_threads()


@learner_side
def _mark_threads(kata) -> int:
    """Remember the threads alive now (before a server is made); returns the mark."""
    _MARKS.append(set(threading.enumerate()))
    return len(_MARKS) - 1


def _threads_since(mark: int) -> list[threading.Thread]:
    """Threads started since ``mark`` and still alive, except the tests' own helpers."""
    before = _MARKS[mark]
    return [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("test-")
    ]


@learner_side
def _server_threads(kata, mark: int) -> list[str]:
    """The names of the threads the server started since ``mark`` that are still alive."""
    return [t.name for t in _threads_since(mark)]


@learner_side
def _made_by_constructor(kata) -> tuple[Any, int, list[tuple[str, int]]]:
    """``EchoServer('127.0.0.1', 0)``, the number of sockets this thread opened while it
    ran, and the addresses of those that listen. Socket creation is not in the trace: a spy
    on socket.socket.__init__ sees them."""
    made: list[socket.socket] = []
    real = socket.socket.__init__
    me = threading.get_ident()

    def init(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        if threading.get_ident() == me:
            made.append(self)

    socket.socket.__init__ = init  # type: ignore[method-assign]
    try:
        server = kata.EchoServer("127.0.0.1", 0)
    finally:
        socket.socket.__init__ = real  # type: ignore[method-assign]
    listening = [s.getsockname()[:2] for s in made if s.fileno() >= 0 and _is_listening(s)]
    return server, len(made), listening


@learner_side
def _backlogs(kata) -> list[int | None]:
    """The backlogs the server asked listen() for, as it started and stopped. listen() is
    not in the trace: a spy on socket.socket.listen sees them."""
    asked: list[int | None] = []
    real = socket.socket.listen
    had_own = "listen" in vars(socket.socket)

    def listen(self: socket.socket, *args: int) -> None:
        asked.append(args[0] if args else None)
        real(self, *args)

    socket.socket.listen = listen  # type: ignore[method-assign]
    try:
        with _running(kata):
            pass
    finally:
        if had_own:
            socket.socket.listen = real  # type: ignore[method-assign]
        else:
            del socket.socket.listen  # type: ignore[misc]
    return asked


def _unsent(kata) -> str | None:
    """A send() that sent only part of its bytes, after which the same thread went on to
    something else than sending the rest: what the trace saw, as a sentence; or None."""
    seen = observed(kata)
    last: dict[tuple[object, str], Any] = {}
    found = then = None
    for event in seen.history.of(("srecv", "ssend", "sendall", "shutdown", "sclose")):
        key = (event.actor, event.obj)
        before = last.get(key)
        if _short(before) and event.op != "ssend":
            found, then = before, f"{_OPS[event.op]} at {seen.line(event.site)}"
            break
        last[key] = event
    else:  # still the last thing that thread did there: is it now waiting in recv()?
        short = [e for e in last.values() if _short(e)]
        waiting = _blocked_in_recv(kata, [e.tid for e in short])
        found = next((e for e in short if e.tid in waiting), None)
        then = "waited in recv()"
    if found is None:
        return None
    asked, sent = found.extra
    return (
        f"send() at {seen.line(found.site)} was given {asked} bytes and sent {sent} of them "
        f"(it returns how many), then the same thread {then} without sending the other "
        f"{asked - sent}: send() may send only part of what it is given; sendall() sends it all"
    )


def _holding(kata) -> str | None:
    """A connection whose server threads all wait in recv() while holding bytes they
    received and never sent back: what the trace and their live stacks show; or None."""
    seen = observed(kata)
    held: dict[str, int] = {}
    threads: dict[str, dict[tuple[int, int], int]] = {}
    site: dict[str, Any] = {}
    for event in seen.history.of(("srecv", "ssend", "sendall")):
        if event.op == "srecv":
            held[event.obj] = held.get(event.obj, 0) + event.extra[1]
            site[event.obj] = event.site
        else:
            sent = event.extra if event.op == "sendall" else event.extra[1]
            held[event.obj] = held.get(event.obj, 0) - sent
        threads.setdefault(event.obj, {})[event.actor] = event.tid
    busy = [conn for conn, size in held.items() if size > 0]
    waiting = _blocked_in_recv(kata, [tid for conn in busy for tid in threads[conn].values()])
    for conn, size in held.items():
        if size > 0 and all(tid in waiting for tid in threads[conn].values()):
            return (
                f"the server received {size} bytes on this connection that it has not sent "
                f"back, and waits in recv() at {seen.line(site[conn])} for more: echo each "
                "chunk as soon as it arrives (the client waits for its answer before it "
                "sends more)"
            )
    return None


def _accepter_serving(kata) -> str | None:
    """A thread that accepts connections, now waiting in recv() on a client's connection:
    while it waits there, nobody accepts the next client. What was seen, or None."""
    seen = observed(kata)
    accepters = {e.actor: e for e in seen.events("accept")}
    waiting = _blocked_in_recv(kata, [e.tid for e in accepters.values()])
    for actor, accepted in accepters.items():
        if accepted.tid in waiting:
            name = seen.history.actor(*actor).name
            return (
                f"thread {name!r}, which accepts the connections ({seen.line(accepted.site)}), "
                "waits in recv() on a client's connection, so nobody accepts the next client "
                "meanwhile: serve each client in a thread of its own"
            )
    return None


_OPS = {
    "srecv": "called recv()",
    "sendall": "called sendall()",
    "shutdown": "called shutdown()",
    "sclose": "closed the connection",
}


def _short(event: Any) -> bool:
    return event is not None and event.op == "ssend" and event.extra[1] < event.extra[0]


SPIN = 20  # this many recv() returning b"" on one connection in one thread: a loop


def _fail_if_spinning(kata, who: str) -> None:
    """Fail as a hang when a server thread keeps calling recv() on a connection that already
    returned b"" (end of file): it loops for ever instead of closing it."""
    seen = observed(kata)
    empty: dict[tuple[object, str], list] = {}
    for event in seen.events("srecv"):
        if event.extra[1] == 0:
            found = empty.setdefault((event.actor, event.obj), [])
            found.append(event)
            if len(found) >= SPIN:
                raise fail_as(
                    "hang",
                    f"{who} closed its sending side (shutdown(SHUT_WR)) and the server thread "
                    f"serving it called recv() at {seen.line(event.site)} {SPIN} times, "
                    "getting b'' each time, without closing the connection: when recv() "
                    "returns b'' the client is done; leave the loop and close the connection",
                )


def _check_echo(sent: bytes, reply: Reply, who: str = "the client", *, kata=None) -> None:
    """Fail in the learner's terms unless ``reply`` is ``sent`` followed by a close."""
    got = reply.data
    if got == sent:
        if reply.end == "timeout":
            raise fail_as(
                "hang",
                f"{who} got all {len(sent)} bytes back, then closed its sending side "
                f"(shutdown(SHUT_WR)) and waited {WAIT:g} s, but the server never closed the "
                "connection: when recv() returns b'' the client is done; leave the loop "
                "and close the connection",
            )
        return
    if sent.startswith(got):
        unsent = _unsent(kata) if kata is not None else None
        if unsent is not None:
            raise fail_as("lost", f"{who} sent {len(sent)} bytes and got {len(got)} back: {unsent}")
        how = {
            "eof": "then the server closed the connection",
            "reset": "then the connection was reset",
            "timeout": f"then nothing more came for {WAIT:g} s",
        }[reply.end]
        why = (
            "one recv() returns one chunk of what was sent, not all of it: keep "
            "receiving (and echoing) until recv() returns b''"
            if reply.end != "timeout"
            else "is every chunk echoed, all of it (sendall, not send), as soon as it arrives?"
        )
        back = f"only the first {len(got)}" if got else "nothing"
        raise fail_as(
            "lost",
            f"{who} sent {len(sent)} bytes but got back {back}, {how}: {why}",
        )
    same = (i for i, (a, b) in enumerate(zip(sent, got, strict=False)) if a != b)
    first = next(same, min(len(sent), len(got)))
    if sorted(got) == sorted(sent):
        raise fail_as(
            "order",
            f"{who} got its {len(sent)} bytes back, but out of order (first difference at "
            f"byte {first}): echo each chunk in the order it arrives",
        )
    raise fail_as(
        "wrong",
        f"{who} sent {len(sent)} bytes and got {len(got)} back, differing from byte {first} "
        f"on (sent {sent[first : first + 8]!r}, got {got[first : first + 8]!r}): the echo must "
        "be exactly the bytes received, unchanged",
    )


def _ask(sock: socket.socket, message: bytes, who: str = "the client", *, kata=None) -> None:
    """Send one message on an open connection and wait until exactly it has come back."""
    sock.sendall(message)
    chunks: list[bytes] = []
    size = 0

    def look() -> None:
        unsent = _unsent(kata)
        if unsent is not None:
            raise fail_as("lost", f"{who} sent {len(message)} bytes and got {size} back: {unsent}")
        serving = _accepter_serving(kata)
        if serving is not None:
            raise fail_as("slow", f"{who} sent {len(message)} bytes and got {size} back: {serving}")
        holding = _holding(kata)
        if holding is not None:
            failure = fail_as(
                "hang", f"{who} sent {len(message)} bytes and got {size} back: {holding}"
            )
            failure.seen = True  # type: ignore[attr-defined]  # the cause is known: keep it
            raise failure

    try:
        while size < len(message):
            chunk = _recv(sock, len(message) - size, look if kata is not None else None)
            if not chunk:
                raise fail_as(
                    "lost",
                    f"{who} sent {len(message)} bytes and the server closed the connection "
                    f"after echoing {size} of them, while the client was still waiting: "
                    "keep serving a client until it closes its side (recv() returns b'')",
                )
            chunks.append(chunk)
            size += len(chunk)
    except TimeoutError:
        raise fail_as(
            "hang",
            f"{who} sent {len(message)} bytes and waited {sock.gettimeout():g} s, but only "
            f"{size} came back: the server must echo each chunk as soon as it arrives, "
            "without waiting for more",
        ) from None
    except ConnectionError as exc:
        raise fail_as(
            "lost",
            f"{who} sent {len(message)} bytes, got {size} back, then the connection broke "
            f"({type(exc).__name__}): keep serving a client until it closes its side",
        ) from None
    _check_echo(message, Reply(b"".join(chunks), "eof"), who, kata=kata)


@dataclasses.dataclass
class Stopped:
    seconds: float  # how long stop() took
    left: list[str]  # the server's threads alive the moment stop() returned


def _stop_within(
    kata,
    server,
    before: int,
    *,
    on_hang: Callable[[], None],
    limit: float = STOP_LIMIT,
) -> Stopped:
    """Call ``server.stop()``; fail as a hang if it has not returned after ``limit`` s.

    stop() runs in a helper thread so that a stop() stuck for ever fails this test with a
    message instead of a timeout. ``on_hang`` closes the test's clients, which lets a
    stuck server finish, so that nothing is left behind but the failure. The threads still
    alive are counted in that helper, the moment stop() returns.
    """
    done = threading.Event()
    errors: list[BaseException] = []
    left: list[str] = []

    def run() -> None:
        try:
            server.stop()
            left.extend(_server_threads(kata, before))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
        finally:
            done.set()

    stopper = threading.Thread(target=run, name="test-stopper", daemon=True)
    started = time.monotonic()
    stopper.start()
    finished = done.wait(limit)
    elapsed = time.monotonic() - started
    if not finished:
        seen = _where(kata, before)  # before on_hang() wakes anyone
        on_hang()
        stopper.join(limit)
        raise fail_as(
            "hang",
            f"stop() had not returned after {limit:g} s while clients were still connected "
            f"(one of them idle).{seen}\n\nA thread blocked in recv() or accept() does not "
            "notice a flag, nor another thread's close(): only shutdown() of its socket wakes "
            "it (or a selector that also watches a wake-up socket). Wake every thread before "
            "you join it.",
        )
    stopper.join()
    if errors:
        raise errors[0]
    return Stopped(elapsed, left)


def _peek(sock: socket.socket, within: float) -> str:
    sock.settimeout(within)
    try:
        return "echoing" if sock.recv(1) else "closed"
    except TimeoutError:
        return "open"
    except OSError:
        return "closed"  # a reset is a close too


def _sees_the_end(sock: socket.socket, within: float = STOP_LIMIT) -> str:
    """What a client sees after stop(): 'closed', 'echoing' or 'open' (no answer at all).

    A connection whose handshake crossed the listener's close can look open to the client
    although the server's side is already gone: the kernel drops its half silently. So when
    nothing arrives, the client says one more byte. A vanished server answers it with a
    reset; a connection that a server thread still holds echoes it, or stays silent.
    """
    seen = _peek(sock, within)
    if seen == "open":
        with contextlib.suppress(OSError):
            sock.send(b"?")
        seen = _peek(sock, within)
    return seen


def _see_the_ends(socks: list[socket.socket], within: float) -> list[str]:
    """_sees_the_end() for several clients at once: each waits at most twice ``within``."""
    seen = ["open"] * len(socks)
    for knock in (False, True):
        waiting = [i for i, sock in enumerate(socks) if seen[i] == "open"]
        if knock:
            for i in waiting:
                with contextlib.suppress(OSError):
                    socks[i].send(b"?")
        deadline = time.monotonic() + within
        while waiting and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([socks[i] for i in waiting], [], [], left)
            for i in [i for i in waiting if socks[i] in ready]:
                seen[i] = _peek(socks[i], within)
                waiting.remove(i)
    return seen


@dataclasses.dataclass
class _Spot:
    """Where one thread was, in the learner's code: its innermost line there."""

    file: str
    line: int
    source: str
    function: str
    call: str | None  # the function it waits in, called from that line (join, ...)
    joining: threading.Thread | None  # the thread it joins, when it waits in join()
    callers: list[str]  # the learner's functions further out, innermost first


def _spot(frame) -> _Spot | None:
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    chain.reverse()  # outermost first
    mine = [i for i, f in enumerate(chain) if f.f_globals.get("__name__", "").startswith("kata_")]
    if not mine:
        return None
    inner = chain[mine[-1]]
    deeper = next(  # the call it waits in, past the plugin's own wrappers
        (
            f
            for f in chain[mine[-1] + 1 :]
            if not f.f_globals.get("__name__", "").startswith("pytest_katas")
        ),
        None,
    )
    joining = deeper.f_locals.get("self") if deeper is not None else None
    return _Spot(
        file=os.path.relpath(inner.f_code.co_filename),
        line=inner.f_lineno,
        source=linecache.getline(inner.f_code.co_filename, inner.f_lineno).split("  #")[0].strip(),
        function=inner.f_code.co_name,
        call=deeper.f_code.co_name if deeper is not None else None,
        joining=joining if isinstance(joining, threading.Thread) else None,
        callers=[f"{chain[i].f_code.co_name} (line {chain[i].f_lineno})" for i in mine[-2::-1]],
    )


@learner_side
def _where(kata, before: int) -> str:
    """What stop() and the server's threads were doing when stop() was found stuck: the
    learner's line each one was at (from their live stacks), and whom stop() joins. stop()
    runs in the thread named 'test-stopper' (over there: the one that called it for it)."""
    stopper = next((t for t in threading.enumerate() if t.name == "test-stopper"), None)
    if stopper is None:
        return ""
    threads = _threads_since(before)
    frames = sys._current_frames()
    spots = {t: _spot(frames.get(t.ident)) for t in [stopper, *threads] if t.ident in frames}
    lines = []
    for thread, spot in spots.items():
        if spot is None:
            continue
        who = "stop()" if thread is stopper else repr(thread.name)
        what = f" in {spot.call}()" if spot.call and not spot.call.startswith("_") else ""
        whom = f" for {spot.joining.name!r}" if spot.joining is not None else ""
        via = f", reached from {', '.join(spot.callers)}" if spot.callers else ""
        lines.append(
            f"  {who} waits{what}{whom} at line {spot.line} (`{spot.source}`) "
            f"in {spot.function}(){via}"
        )
    if not lines:
        return ""
    files = {spot.file for spot in spots.values() if spot is not None}
    text = "\n\nWhere stop() and the server's threads were at that moment:\n" + "\n".join(lines)
    if files:
        text += f"\n  (lines of {', '.join(sorted(files))})"
    joined = spots.get(stopper)
    target = joined.joining if joined is not None else None
    inner = spots.get(target) if target is not None else None
    if inner is not None and "recv(" in inner.source:
        text += (
            f"\n\nstop() is joining {target.name!r} while that thread is still in recv() on a "
            "client connection nobody has shut down yet: anything stop() does after this "
            "join() has not happened."
        )
    return text


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- task 1: one client at a time ----------------------------------------------------------


def test_nothing_listens_until_start(kata):
    server, made, listening = _made_by_constructor(kata)
    server.start()
    server.stop()
    if made:
        what = f", one of them listening on {tuple(listening[0])}" if listening else ""
        raise fail_as(
            "contract",
            f"EchoServer('127.0.0.1', 0) opened {made} socket(s) before start() was "
            f"called{what}: the constructor only remembers the address; open, bind and "
            "listen in start()",
        )


def _is_listening(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except (OSError, AttributeError):
        return False


def test_start_returns_the_host_and_port_it_listens_on(kata):
    with _running(kata) as (_, addr):
        assert isinstance(addr, tuple) and len(addr) == 2, (
            f"start() must return a (host, port) tuple; it returned {addr!r}"
        )
        host, port = addr
        assert host == "127.0.0.1" and isinstance(port, int) and port > 0, (
            f"start() returned {addr!r}: with port 0 the system picks a free port; return "
            "the one actually bound (getsockname()), not the 0 you were given"
        )
        try:
            _connect(addr).close()  # at once: the server must be listening when start() returns
        except OSError as exc:
            raise fail_as(
                "wrong",
                f"start() returned {addr!r}, but a client connecting to it right away failed "
                f"({type(exc).__name__}): listen before start() returns, and return the "
                "address you listen on",
            ) from None


def test_a_client_gets_back_exactly_what_it_sent(kata):
    message = b"Hello, echo! \xe4\xbd\xa0\xe5\xa5\xbd\n"
    with _running(kata) as (_, addr):
        _check_echo(message, _exchange(addr, message, kata), kata=kata)


def test_every_byte_value_comes_back_unchanged(kata):
    message = bytes(range(256)) * 4 + bytes(reversed(range(256)))
    with _running(kata) as (_, addr):
        reply = _exchange(addr, message, kata)
    if reply.data != message and len(reply.data) == len(message):
        raise fail_as(
            "wrong",
            "the bytes came back altered: treat the data as raw bytes (no decode()/encode(), "
            "no strip(), no newline handling)",
        )
    _check_echo(message, reply, kata=kata)


def test_a_mebibyte_comes_back_whole_and_in_order(kata):
    message = b"".join(n.to_bytes(4, "big") for n in range(MIB // 4))
    with _running(kata) as (_, addr):
        _check_echo(message, _exchange(addr, message, kata), kata=kata)


def test_each_message_is_echoed_before_the_client_sends_the_next(kata):
    with _running(kata) as (_, addr), _connect(addr) as sock:
        for n, size in enumerate([4, 1000, 5000, 30000, 1]):
            message = bytes((n * 37 + i) % 256 for i in range(size))
            _ask(
                sock, message, who=f"the client (message {n + 1} of 5 on one connection)", kata=kata
            )


def test_the_server_closes_the_connection_after_the_client_half_closes(kata):
    with _running(kata) as (_, addr), _connect(addr) as sock:
        _ask(sock, b"first", kata=kata)
        _send_then_half_close(sock, b"last words")
        _check_echo(b"last words", _read_to_end(sock, kata), kata=kata)


def test_the_server_keeps_serving_after_a_client_leaves(kata):
    with _running(kata) as (_, addr):
        for n in range(3):
            with _connect(addr) as sock:
                who = f"client {n + 1} of 3 (one after another)"
                _ask(sock, f"visitor {n}".encode(), who=who, kata=kata)
        fourth = "a fourth client"
        _check_echo(
            b"and one more", _exchange(addr, b"and one more", kata, fourth), fourth, kata=kata
        )


# -- task 2: many clients at once -----------------------------------------------------------


BACKLOG = 50  # the contract: a backlog for 50+ clients connecting at once


def test_the_backlog_holds_fifty_clients_connecting_at_once(kata):
    asked = _backlogs(kata)
    small = [n for n in asked if n is not None and n < BACKLOG]
    if small:
        raise fail_as(
            "contract",
            f"the server called listen({small[0]}): only about {small[0]} connections can "
            f"wait for accept(), so when {BACKLOG}+ clients connect at once the others are "
            f"kept waiting; listen with a backlog of {BACKLOG} or more (listen() with no "
            "argument picks a big enough one)",
        )


def test_a_silent_client_does_not_hold_up_the_others(kata):
    with _running(kata) as (_, addr), _connect(addr) as silent:
        # The silent client connected first, and never says a word.
        assert silent.fileno() >= 0
        with _connect(addr, timeout=WAIT) as talker:
            try:
                _ask(talker, b"is anyone there?", who="a second client", kata=kata)
            except AssertionError as exc:
                if getattr(exc, "kind", None) != "hang" or getattr(exc, "seen", False):
                    raise
                raise fail_as(
                    "slow",
                    "a client connected and then sent nothing; a second client sent 16 bytes "
                    f"and got no echo within {WAIT:g} s: serve each client in a thread of "
                    "its own, so that a silent one holds up only its own thread",
                ) from None


def test_each_client_is_served_by_a_thread_started_for_it(kata):
    sizes = (1111, 2222, 3333)  # each client its own length: the trace tells their sockets apart
    connected: list[int] = []  # when each client began to connect (the trace's clock)
    socks: list[socket.socket] = []
    with _running(kata) as (_, addr):
        try:
            for _ in sizes:
                connected.append(time.monotonic_ns())
                socks.append(_connect(addr))
            for n, size in enumerate(sizes):
                who = f"client {n + 1} of {len(sizes)} (all connected at once)"
                try:
                    _ask(socks[n], bytes([65 + n]) * size, who=who, kata=kata)
                except AssertionError as exc:
                    if n == 0 or getattr(exc, "kind", None) != "hang" or getattr(exc, "seen", 0):
                        raise
                    raise fail_as(
                        "slow",
                        f"{who} sent {size} bytes and did not get them all back within "
                        f"{WAIT:g} s, while client 1 was still connected: serve each client "
                        "in a thread of its own",
                    ) from None
        finally:
            _close_all(socks)
    seen = observed(kata)
    received: dict[str, int] = {}
    for event in seen.events("srecv"):
        received[event.obj] = received.get(event.obj, 0) + event.extra[1]
    serving: dict[str, set[tuple[int, int]]] = {}
    for event in seen.history.of(("srecv", "ssend", "sendall")):
        serving.setdefault(event.obj, set()).add(event.actor)
    began = {e.actor: e.ts for e in seen.events("tbegin")}
    served: list[set[tuple[int, int]]] = []
    for size in sizes:
        found = [conn for conn, total in received.items() if total == size]
        if len(found) != 1:
            return  # its recv() calls are not in the trace (recv_into, makefile): cannot tell
        served.append(serving[found[0]])

    def name(actor: tuple[int, int]) -> str:
        return repr(seen.history.actor(*actor).name)

    for n, threads in enumerate(served):
        for m in range(n):
            shared = threads & served[m]
            if shared:
                raise fail_as(
                    "contract",
                    f"clients {m + 1} and {n + 1} were connected at the same time, and thread "
                    f"{name(min(shared))} received and echoed the bytes of both: serve each "
                    "client in a thread of its own, started for it when it is accepted",
                )
    for n, threads in enumerate(served):
        early = sorted(t for t in threads if t in began and began[t] < connected[n])
        if early:
            raise fail_as(
                "contract",
                f"client {n + 1}'s bytes were received and echoed by thread {name(early[0])}, "
                "which was already running before that client connected: start a thread of "
                "its own for each client you accept",
            )


def _proved(kata) -> AssertionError | None:
    """What the trace and the server's threads already prove wrong while many clients wait."""
    serving = _accepter_serving(kata)
    if serving is not None:
        return fail_as("slow", f"{CLIENTS} clients connected at once: {serving}")
    unsent = _unsent(kata)
    if unsent is not None:
        return fail_as("lost", f"{CLIENTS} clients connected at once: {unsent}")
    try:
        _fail_if_spinning(kata, "a client")
    except AssertionError as exc:
        return exc
    return None


def test_sixty_clients_released_together_are_all_served_at_once(kata):
    start_line = threading.Barrier(CLIENTS)
    all_answered = threading.Barrier(CLIENTS)
    answered = [False] * CLIENTS
    problems: list[AssertionError] = []
    connected: list[socket.socket] = []

    def client(n: int) -> None:
        try:
            start_line.wait(timeout=WAIT)
            with _connect(addr) as sock:
                connected.append(sock)
                _ask(sock, f"client {n} says hello\n".encode(), who=f"client {n}")
                answered[n] = not all_answered.broken  # late answers do not count
                # Every client now waits, connected, until all got their answer. A server
                # that serves one client at a time never gets past the first one.
                all_answered.wait(timeout=WAIT)
                second = bytes([n]) * (1000 + 50 * n)
                _send_then_half_close(sock, second)
                _check_echo(second, _read_to_end(sock), who=f"client {n}")
        except threading.BrokenBarrierError:
            pass  # another client gave up; the count of answers tells the story
        except AssertionError as exc:
            problems.append(exc)
        except OSError as exc:
            problems.append(fail_as("crash", f"client {n}: {type(exc).__name__}: {exc}"))
        finally:
            if not answered[n]:  # free the clients waiting for us
                start_line.abort()
                all_answered.abort()

    with _running(kata) as (_, addr):
        clients = [
            threading.Thread(target=client, args=(n,), name=f"test-client-{n}")
            for n in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        seen: AssertionError | None = None
        for thread in clients:
            thread.join(SLICE)
            while thread.is_alive():  # meanwhile, look at the trace every SLICE s
                if seen is None and (seen := _proved(kata)) is not None:
                    start_line.abort()  # the cause is known: free every client at once
                    all_answered.abort()
                    for sock in list(connected):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                thread.join(SLICE)
    if seen is not None:
        raise seen
    count = sum(answered)
    if count < CLIENTS:
        raise fail_as(
            "slow",
            f"{CLIENTS} clients connected at once and each sent one line; only {count} got "
            f"it echoed within {WAIT:g} s while the others stayed connected: every client "
            "needs a thread of its own, and the listening socket a backlog for 50+ clients",
        )
    if problems:
        raise problems[0]


def test_several_clients_sending_a_mebibyte_each_get_their_own_bytes_back(kata):
    payloads = [bytes([n]) * 3 + n.to_bytes(1, "big") * (MIB - 3) for n in range(1, 7)]
    replies: dict[int, Reply] = {}

    def client(n: int) -> None:
        replies[n] = _exchange(addr, payloads[n])

    with _running(kata) as (_, addr):
        clients = [
            threading.Thread(target=client, args=(n,), name=f"test-client-{n}")
            for n in range(len(payloads))
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
    for n, payload in enumerate(payloads):
        who = f"client {n + 1} of {len(payloads)} (all at once)"
        _check_echo(payload, replies[n], who=who, kata=kata)


# -- task 3: stopping cleanly ----------------------------------------------------------------


def _stop_quietly(server) -> None:
    """After a failure, before the test's own stop(): stop the server within bounds, so
    that no thread of it is left for the run to wait for; what it does is not judged."""
    stopper = threading.Thread(target=server.stop, name="test-cleanup", daemon=True)
    stopper.start()
    stopper.join(STOP_LIMIT)


@contextlib.contextmanager
def _idle_clients(server, addr: tuple[str, int], kata) -> Iterator[list[socket.socket]]:
    """Two idle clients: one that was served once and fell silent, one that never spoke.

    The silent one is given up to ``SETTLE`` s to get its server thread, so that stop()
    finds both clients accepted: a client accepted while stop() runs is the business of
    test_stop_leaves_nothing_behind_even_while_clients_are_arriving alone."""
    socks: list[socket.socket] = []
    ready = False
    try:
        socks.append(_connect(addr))
        _ask(socks[0], b"hi, then silence", who="the idle client", kata=kata)
        threads = len(observed(kata).events("tbegin"))
        socks.append(_connect(addr))
        for _ in range(int(SETTLE / 0.05)):
            if len(observed(kata).events("tbegin")) > threads:
                break
            time.sleep(0.05)
        ready = True
        yield socks
    finally:
        _close_all(socks)
        if not ready:  # the server failed before stop() was tried
            _stop_quietly(server)


def test_stop_returns_within_two_seconds_while_clients_sit_idle(kata):
    before = _mark_threads(kata)
    server = kata.EchoServer("127.0.0.1", 0)
    addr = server.start()
    with _idle_clients(server, addr, kata) as idle:
        stopped = _stop_within(kata, server, before, on_hang=lambda: _close_all(idle))
    assert stopped.seconds < STOP_LIMIT, (
        f"stop() took {stopped.seconds:.2f} s; it must return within 2 s"
    )


def test_stop_closes_the_connections_of_idle_clients(kata):
    before = _mark_threads(kata)
    server = kata.EchoServer("127.0.0.1", 0)
    addr = server.start()
    with _idle_clients(server, addr, kata) as idle:
        _stop_within(kata, server, before, on_hang=lambda: _close_all(idle))
        seen = [_sees_the_end(sock) for sock in idle]
    if seen[0] != "closed":
        raise fail_as(
            "leak",
            f"after stop() returned, an idle client's connection was still open (it waited "
            f"{STOP_LIMIT:g} s for end of file and saw: {seen[0]}): stop() must close every "
            "client connection, also those of clients that send nothing",
        )
    if seen[1] != "closed":
        raise fail_as(
            "leak",
            "after stop() returned, a client that had connected but never sent anything "
            f"still had an open connection (it waited {STOP_LIMIT:g} s for end of file and "
            f"saw: {seen[1]}): was it accepted while stop() ran, after stop() had made its "
            "list of connections to close?",
        )


def test_no_server_thread_is_still_running_after_stop(kata):
    before = _mark_threads(kata)
    server = kata.EchoServer("127.0.0.1", 0)
    addr = server.start()
    try:
        for n in range(3):
            message = b"served and gone %d" % n
            _check_echo(message, _exchange(addr, message, kata), kata=kata)
    except BaseException:
        _stop_quietly(server)
        raise
    with _idle_clients(server, addr, kata) as idle:
        stopping = time.monotonic_ns()  # the trace's clock
        left = _stop_within(kata, server, before, on_hang=lambda: _close_all(idle)).left
    if left:
        names = ", ".join(sorted({repr(name) for name in left}))  # how many varies; who not
        raise fail_as(
            "leak",
            f"{len(left)} thread(s) started by the server were still running when stop() "
            f"returned ({names}): stop() must wake every thread it started (the accept loop "
            "and each client's) and join it before returning",
        )
    # A thread still running when stop() began must have been joined, even if this time it
    # happened to end before stop() returned: on a slower run it would still be running.
    seen = observed(kata)
    ended = {e.obj: e.ts for e in seen.events("tend")}
    joined = {e.obj for e in seen.events("tjoin")}
    unjoined = [
        e
        for e in seen.events("tstart")
        if e.site is not None and ended.get(e.obj, stopping) >= stopping and e.obj not in joined
    ]
    if unjoined:
        lines = sorted({seen.line(e.site) for e in unjoined})
        raise fail_as(
            "leak",
            f"stop() returned without joining {len(unjoined)} thread(s) that were running when "
            f"it began (started at {', '.join(lines)}): they ended in time in this run, but "
            "nothing waited for them, and on a slower run they would still be running. stop() "
            "must join every thread it started",
        )


def test_the_port_refuses_connections_after_stop(kata):
    before = _mark_threads(kata)
    server = kata.EchoServer("127.0.0.1", 0)
    addr = server.start()
    with _idle_clients(server, addr, kata) as idle:
        _stop_within(kata, server, before, on_hang=lambda: _close_all(idle))
    try:
        late = _connect(addr, timeout=1.0)
    except (ConnectionRefusedError, TimeoutError):
        return
    late.close()
    raise fail_as(
        "leak",
        f"after stop() a new client could still connect to {addr}: stop() must close the "
        "listening socket",
    )


def test_a_with_block_starts_the_server_and_stops_it_even_after_an_error(kata):
    before = _mark_threads(kata)
    addr = ("127.0.0.1", _free_port())

    class Oops(Exception):
        pass

    try:
        with kata.EchoServer(*addr) as server:
            assert isinstance(server, kata.EchoServer), (
                f"`with EchoServer() as srv` must give the server itself; __enter__ "
                f"returned {server!r}"
            )
            _check_echo(
                b"inside the with block", _exchange(addr, b"inside the with block", kata), kata=kata
            )
            raise Oops
    except Oops:
        pass
    left = _server_threads(kata, before)
    if left:
        raise fail_as(
            "leak",
            f"after an exception left the with block, {len(left)} server thread(s) were still "
            "running: __exit__ must stop() the server, and stop() must join every thread",
        )
    try:
        _connect(addr, timeout=1.0).close()
    except (ConnectionRefusedError, TimeoutError):
        return
    raise fail_as("leak", "after the with block the port still accepted connections")


def test_stop_leaves_nothing_behind_even_while_clients_are_arriving(kata, kata_stress):
    def scenario() -> tuple[str, int, str]:
        before = _mark_threads(kata)
        server = kata.EchoServer("127.0.0.1", 0)
        addr = server.start()
        socks: list[socket.socket] = []
        arrived = threading.Event()

        def arrive() -> None:  # new clients knock while stop() runs
            for _ in range(4):
                try:
                    socks.append(_connect(addr, timeout=STOP_LIMIT))
                except OSError:
                    pass  # refused: the server had already stopped listening
                arrived.set()

        arriving = threading.Thread(target=arrive, name="test-arriving")
        try:
            socks.append(_connect(addr))
            _ask(socks[0], b"hello", who="the idle client", kata=kata)
            arriving.start()
            arrived.wait(WAIT)
            stopped = _stop_within(
                kata, server, before, on_hang=lambda: (arriving.join(), _close_all(socks))
            )
            arriving.join()
            left = len(stopped.left)
            # A thread left running is reported first; no need to wait on its sockets.
            seen = "" if left else "+".join(sorted(set(_see_the_ends(socks, 1.0))))
        finally:
            if arriving.is_alive():
                arriving.join()
            _close_all(socks)
        return ("stopped", left, seen)

    def check(outcome: tuple[str, int, str]) -> str | None:
        _, left, seen = outcome
        if left:
            return (
                f"{left} server thread(s) were still running the moment stop() returned, "
                "while new clients kept connecting: stop() must join every thread it started, "
                "including those of clients accepted while it ran"
            )
        if seen != "closed":
            return (
                f"after stop(), some clients' connections were not closed (they saw: {seen}): "
                "a client accepted while stop() ran must be closed too"
            )
        return None

    kata_stress.run(scenario, check, kind="leak", max_runs=150)
