"""MUTANT: relay starts one child to receive the items and a second one to send them back.

expect: wrong
clause: C1
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection


def _receive(inbox: Connection, unused_writer: Connection, handover: Connection) -> None:
    unused_writer.close()
    received = []
    while True:
        try:
            received.append(inbox.recv())
        except EOFError:
            break
    handover.send(received)
    handover.close()


def _answer(handover: Connection, outbox: Connection, unused: list[Connection]) -> None:
    for end in unused:  # under fork it inherited the parent's ends too
        end.close()
    outbox.send(handover.recv())
    outbox.close()


def relay(items: list) -> list:
    reader, writer = multiprocessing.Pipe(duplex=False)
    hand_reader, hand_writer = multiprocessing.Pipe(duplex=False)
    back_reader, back_writer = multiprocessing.Pipe(duplex=False)
    first = multiprocessing.Process(target=_receive, args=(reader, writer, hand_writer))
    second = multiprocessing.Process(
        target=_answer, args=(hand_reader, back_writer, [writer, hand_writer])
    )
    first.start()
    second.start()
    reader.close()
    hand_writer.close()
    hand_reader.close()
    back_writer.close()
    for item in items:
        writer.send(item)
    writer.close()
    received = back_reader.recv()
    first.join()
    second.join()
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
