"""MUTANT: fan_out gives each consumer a Pipe of its own, dealt round robin, with no lock.

expect: contract
clause: C6
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection


def _echo(inbox: Connection, unused_writer: Connection, outbox: Connection) -> None:
    # Under fork this process inherited the parent's write end too. While any copy of a
    # write end is open, recv() can never report end of file: close ours first.
    unused_writer.close()
    received = []
    while True:
        try:
            received.append(inbox.recv())
        except EOFError:
            break
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


def _consume2(name, reader, results):
    received = []
    while True:
        item = reader.recv()
        if isinstance(item, _End):
            break
        received.append(item)
    results.put((name, received))


def _produce2(writers, items):
    for n, item in enumerate(items):
        writers[n % len(writers)].send(item)
    for w in writers:
        w.send(_End())


def fan_out(items: list, consumers: int = 2) -> dict[str, list]:
    pipes = [multiprocessing.Pipe(duplex=False) for _ in range(consumers)]
    results = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_consume2, args=(f"consumer-{n}", pipes[n][0], results))
        for n in range(consumers)
    ]
    workers.append(multiprocessing.Process(target=_produce2, args=([w for _, w in pipes], items)))
    for worker in workers:
        worker.start()
    received = dict(results.get() for _ in range(consumers))
    for worker in workers:
        worker.join()
    return received
