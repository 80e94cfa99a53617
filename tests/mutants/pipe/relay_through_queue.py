"""MUTANT: relay moves its items through a multiprocessing.Queue and never makes a Pipe.

expect: contract
clause: C2
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection


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


def _echo(inbox, outbox):
    received = []
    while True:
        item = inbox.get()
        if isinstance(item, _End):
            break
        received.append(item)
    outbox.put(received)


def relay(items: list) -> list:
    inbox = multiprocessing.Queue()
    outbox = multiprocessing.Queue()
    child = multiprocessing.Process(target=_echo, args=(inbox, outbox))
    child.start()
    for item in items:
        inbox.put(item)
    inbox.put(_End())
    received = outbox.get()
    child.join()
    return received
