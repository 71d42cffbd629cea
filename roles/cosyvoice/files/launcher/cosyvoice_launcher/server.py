"""Socket binding and systemd readiness (stdlib only, unit-testable)."""

from __future__ import annotations

import errno
import logging
import os
import socket

log = logging.getLogger("cosyvoice_launcher")


class BindError(RuntimeError):
    """The listener could not be created; the message names the cause and the fix."""


def bind_listener(host: str, port: int, backlog: int = 128) -> socket.socket:
    """Bind before serving, so a port conflict is reported clearly (the seed's `lsof -i :7860` step)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    # proto must be TCP (not 0): asyncio sets TCP_NODELAY only on sockets it
    # knows are TCP, and without it replies on keep-alive connections wait
    # ~40 ms for delayed ACKs.
    sock = socket.socket(family, socktype, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"port {port} on {host} is already in use by another process; "
                            f"find it with: ss -ltnp 'sport = :{port}'  (or: lsof -i :{port}); "
                            f"stop it or choose another cosyvoice_server_port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise BindError(f"{host} is not an address of this host; use 0.0.0.0 (all interfaces) "
                            f"or one of the addresses shown by: ip -brief addr") from None
        if exc.errno == errno.EACCES:
            raise BindError(f"no permission to bind port {port}; ports below 1024 need privileges — "
                            f"use a port >= 1024 and put nginx in front (cosyvoice_exposure: proxy)") from None
        raise
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def mark_ready(path: str | None, ready: bool) -> bool:
    """Write this process's pid to path (COSYVOICE_READY_FILE) once the engine is loaded;
    remove the file at start (ready=False).

    supervisord has no Type=notify: its watchdog reads this file to tell a process
    that is still loading the model from one that loaded and then stopped answering.
    """
    if not path:
        return False
    try:
        if not ready:
            if os.path.lexists(path):
                os.unlink(path)
            return True
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        logging.getLogger("cosyvoice_launcher").warning("cannot write the ready file %s: %s", path, exc)
        return False
    return True


def sd_notify(message: str) -> bool:
    """Tell systemd (Type=notify) we are ready; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message.encode())
    return True
