"""A TCP proxy in front of the bundled redis-server that loses one answer: Redis applies a request
and answers it, the client never reads the answer (its connection is cut). The crash-safety tests
make "Redis applied it, the bot does not know" with it, over SMPP and over CMPP."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    """TCP on loopback -> the Redis unix socket. `arm(marker)`: when a client's request contains
    `marker`, Redis's answer to it is swallowed and that client's connection cut."""

    def __init__(self, unix_path: str):
        self.unix_path = unix_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.marker: bytes | None = None
        self.cuts = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        self.marker = marker

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.unix_path)
            state = {"doomed": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                if self.marker is not None and self.marker in data:
                    self.marker = None
                    state["doomed"] = True
                server.sendall(data)
        except OSError:
            pass

    def _down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := server.recv(65536):
                if state["doomed"]:
                    self.cuts += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()
