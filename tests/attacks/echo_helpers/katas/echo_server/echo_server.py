"""Attack: make the echo_server tests' checks and their looks inside the server's process
pass (no bytes compared, no thread left, nothing seen in the constructor), then hand in a
server that never listens."""

import sys

for name, module in list(sys.modules.items()):
    if name.endswith("test_echo_server") and module is not None:
        for attr in dir(module):
            if attr.startswith(("_check", "_ask", "_stop_within", "_proved", "_unsent")):
                setattr(module, attr, lambda *args, **kwargs: None)
        module._server_threads = lambda *args, **kwargs: []


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.address = (host, port or 9)

    def start(self) -> tuple[str, int]:
        return self.address  # nothing listens there

    def stop(self) -> None:
        pass

    def __enter__(self) -> "EchoServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
