"""MUTANT: relay's child loops `while item := inbox.recv()`, so a falsy item ends it early.

When the child has quit before the parent is done sending, the parent's next send() meets
a pipe nobody reads: BrokenPipeError (CRASH) instead of a short list (WRONG), by timing.

expect: wrong, lost, crash
clause: C5
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection


def _echo(inbox: Connection, unused_writer: Connection, outbox: Connection) -> None:
    unused_writer.close()
    received = []
    try:
        while item := inbox.recv():
            received.append(item)
    except EOFError:
        pass
    inbox.close()
    outbox.send(received)
    outbox.close()


def relay(items: list) -> list:
    reader, writer = multiprocessing.Pipe(duplex=False)
    back_reader, back_writer = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=_echo, args=(reader, writer, back_writer))
    child.start()
    reader.close()  # the child reads; the parent never does
    back_writer.close()  # the child answers; the parent never does
    for item in items:
        writer.send(item)
    writer.close()  # the last write end closes: the child's recv() raises EOFError
    received = back_reader.recv()  # read before join: a big answer would fill the pipe
    back_reader.close()
    child.join()
    return received


class _End:
    """A consumer's sentinel: no item can be mistaken for it, however falsy."""


def _produce(writer: Connection, items: list, consumers: int) -> None:
    for item in items:
        writer.send(item)
    for _ in range(consumers):  # one end for each consumer: each stops at its own
        writer.send(_End())
    writer.close()


def _consume(name: str, reader: Connection, lock, results) -> None:
    received = []
    while True:
        with lock:  # one reader at a time, for a whole message
            item = reader.recv()
        if isinstance(item, _End):
            break
        received.append(item)
    results.put((name, received))  # a Queue is safe for several writers; a Pipe is not


def fan_out(items: list, consumers: int = 2) -> dict[str, list]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    results = multiprocessing.Queue()
    lock = multiprocessing.Lock()
    workers = [
        multiprocessing.Process(target=_consume, args=(f"consumer-{n}", reader, lock, results))
        for n in range(1, consumers + 1)
    ]
    workers.append(multiprocessing.Process(target=_produce, args=(writer, items, consumers)))
    for worker in workers:
        worker.start()
    received = dict(results.get() for _ in range(consumers))  # before join, as in relay
    for worker in workers:
        worker.join()
    return received
