"""Attack: take the plugin's hooks out of threading, so a racy Counter runs unobserved."""

import threading
import time

threading.Lock = getattr(threading, "_kata_native_Lock", threading.Lock)
try:
    import _thread

    threading._allocate_lock = _thread.allocate_lock
    threading.Lock = _thread.allocate_lock
except ImportError:
    pass


class Counter:
    def __init__(self):
        self._value = 0

    def increment(self, by=1):
        self._value += by

    @property
    def value(self):
        return self._value


def hammer(counter, threads=8, per_thread=1000):
    workers = [
        threading.Thread(target=lambda: [counter.increment() for _ in range(per_thread)])
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counter.value
