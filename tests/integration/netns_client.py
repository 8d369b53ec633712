"""Open TCP connections from inside a lab namespace (setns in a throwaway thread).

A socket belongs to the network namespace it was created in, so a test in the root
namespace can make one in the client namespace and then use it from anywhere.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import threading

from colopp.lab import ns_path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_netns(netns: str, address: tuple[str, int], timeout: float) -> socket.socket:
    """A connected TCP socket created inside ``netns``."""
    result: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            fd = os.open(ns_path(netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            result.append(socket.create_connection(address, timeout=timeout))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


class NetnsHTTPConnection(http.client.HTTPConnection):
    """http.client over a socket made in a namespace; keep-alive on one TCP connection."""

    def __init__(self, netns: str, host: str, port: int = 80, timeout: float = 15.0) -> None:
        super().__init__(host, port, timeout=timeout)
        self.netns = netns
        self.reconnects = 0

    def connect(self) -> None:
        if self.sock is not None:
            self.reconnects += 1
        self.sock = socket_in_netns(self.netns, (self.host, self.port), self.timeout or 15.0)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Length": str(len(body))} if body is not None else {}
        self.request(method, path, body=body, headers=headers)
        response = self.getresponse()
        return response.status, response.read()
