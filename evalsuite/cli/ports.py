"""A listening port is checked before a server starts: in range and free on that address, or one line naming it."""
from __future__ import annotations

import socket

from ..errors import EvalsuiteError


def check_port(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise EvalsuiteError(f"--port {port}: expected a TCP port number in 1..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise EvalsuiteError(f"--host {host}: not an address this machine can listen on ({e.strerror or e})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise EvalsuiteError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e}); choose "
                                 "another port") from None
