"""A hostile peer on loopback: a real socket server that answers every HTTP request with a
head, then sends the same piece over and over until the reader hangs up or `give_up` bytes
went out. It counts what the kernel took from it, so a test can tell how much a reader let
in before it stopped (kernel socket buffers hold some of it: a few MB at most)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SEND_BUFFER = 64 * 1024  # small, so what the kernel holds for the reader stays small too


@dataclass
class Plan:
    head: bytes
    """Status line and headers, through the blank line."""
    piece: bytes
    """Sent again and again as the body."""
    give_up: int
    """Body bytes after which the server ends an answer itself."""
    chunked: bool = False
    prefix: bytes = b""
    """Body bytes sent once, before the pieces."""
    pause_after: int | None = None
    """Body bytes after which sending waits for `resume` (the connection stays open)."""
    resume: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)


@dataclass
class Hostile:
    url: str
    plan: Plan
    sent: int = 0
    """Body bytes the kernel accepted, over all requests."""
    hung_up: bool = False
    """The reader closed the connection before `give_up` bytes went out."""
    answered: threading.Event = field(default_factory=threading.Event)
    """One answer ended (the reader hung up, or everything was sent)."""


@contextmanager
def hostile(plan: Plan) -> Iterator[Hostile]:
    listener = socket.create_server(("127.0.0.1", 0))
    peer = Hostile(f"http://127.0.0.1:{listener.getsockname()[1]}", plan)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_answer, args=(conn, peer), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield peer
    finally:
        stop.set()
        plan.resume.set()
        listener.close()


def _answer(conn: socket.socket, peer: Hostile) -> None:
    plan = peer.plan
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    try:
        _read_request(conn)
        conn.sendall(plan.head)
        sent = _send(conn, peer, plan.prefix)
        while sent < plan.give_up:
            if plan.pause_after is not None and sent >= plan.pause_after:
                plan.paused.set()
                plan.resume.wait()
                plan.pause_after = None
            sent += _send(conn, peer, plan.piece)
        if plan.chunked:
            conn.sendall(b"0\r\n\r\n")
    except OSError:
        peer.hung_up = True
    finally:
        peer.answered.set()
        conn.close()


def _send(conn: socket.socket, peer: Hostile, data: bytes) -> int:
    if not data:
        return 0
    if peer.plan.chunked:
        conn.sendall(b"%x\r\n" % len(data))
    conn.sendall(data)
    if peer.plan.chunked:
        conn.sendall(b"\r\n")
    peer.sent += len(data)
    return len(data)


def _read_request(conn: socket.socket) -> None:
    """The request's head and its Content-Length body (its content does not matter)."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = conn.recv(65536)
        if not got:
            raise OSError("the client left before asking")
        data += got
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        got = conn.recv(65536)
        if not got:
            return
        body += got
