"""VARIANT: relay closes ends with `with` blocks; fan_out's consumers take turns under an RLock
and send their results back through a second pipe, under a second lock.

Several writers on one pipe is as unsafe as several readers once a message is bigger than a
pipe writes in one piece, so the results pipe has a lock of its own.
"""

from __future__ import annotations

import multiprocessing


def _echo(inbox, feed, outbox) -> None:
    feed.close()  # our copy of the parent's write end, or EOF never comes
    received = []
    with inbox:
        try:
            while True:
                received.append(inbox.recv())
        except EOFError:
            pass
    with outbox:
        outbox.send(received)


def relay(items: list) -> list:
    inbox, feed = multiprocessing.Pipe(duplex=False)
    answers, outbox = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=_echo, args=(inbox, feed, outbox))
    child.start()
    inbox.close()
    outbox.close()
    with feed:
        for item in items:
            feed.send(item)
    with answers:
        received = answers.recv()
    child.join()
    return received


_STOP = ("fan_out", "stop")  # a tuple no test item equals


def _consume(reader, turn, results, answer_lock) -> None:
    got = []
    while True:
        with turn:
            item = reader.recv()
        if item == _STOP and type(item) is tuple:
            break
        got.append(item)
    with answer_lock:
        results.send((multiprocessing.current_process().name, got))


def _produce(writer, items, consumers) -> None:
    for item in items:
        writer.send(item)
    for _ in range(consumers):
        writer.send(_STOP)


def fan_out(items: list, consumers: int = 2) -> dict[str, list]:
    reader, writer = multiprocessing.Pipe(duplex=False)
    answers, results = multiprocessing.Pipe(duplex=False)
    turn, answer_lock = multiprocessing.RLock(), multiprocessing.Lock()
    workers = [
        multiprocessing.Process(target=_consume, args=(reader, turn, results, answer_lock))
        for _ in range(consumers)
    ]
    workers.append(multiprocessing.Process(target=_produce, args=(writer, items, consumers)))
    for worker in workers:
        worker.start()
    got = dict(answers.recv() for _ in range(consumers))
    for worker in workers:
        worker.join()
    return got
