"""Accepting new connections at a bounded rate (``streaming.admission.AcceptRate``).

Beyond the rate the server stops reading its listening sockets, so that a flood of new
connections waits in the kernel's listen backlog (and, when it is full, in the clients'
own SYN retries) instead of costing the event loop a websocket handshake each; clients
already connected are never touched and a newcomer is accepted in its turn, not refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection

from streaming.admission import AcceptRate

log = logging.getLogger(__name__)


def gated_connection(listener: Callable[[], Listener | None]) -> type[ServerConnection]:
    """websockets' connection class (``serve(create_connection=...)``), telling
    ``listener()`` of every TCP connection as soon as it is accepted, before any HTTP is
    read. asyncio accepts up to its backlog (100) connections per wake-up; those beyond the
    rate are read one by one at the rate (in arrival order, as from the kernel's backlog),
    not in one burst of handshakes."""

    class GatedConnection(ServerConnection):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            gate = listener()
            if gate is not None:
                wait = gate.accepted()
                if wait > 0:  # accepted in a burst beyond the rate: read it when its turn comes
                    transport.pause_reading()
                    asyncio.get_running_loop().call_later(wait, _resume_reading, transport)

    return GatedConnection


def _resume_reading(transport) -> None:
    if not transport.is_closing():
        transport.resume_reading()


class Listener:
    """Stops and restarts accepting on the server's listening sockets, so that new
    connections beyond ``AcceptRate`` wait in the kernel's backlog (and, when it is full,
    in their own SYN retries) rather than on the event loop.

    asyncio has no public pause for a listening socket; this takes the reader callback
    asyncio registered for each (``loop._selector``, as asyncio itself does to pause
    accepting on EMFILE) and re-adds the same callback on resume. On a loop without a
    selector (uvloop, Windows proactor) it logs once and never pauses."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: Iterable, rate: AcceptRate):
        self.loop, self.rate = loop, rate
        self.paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._readers: list[tuple[int, Callable, tuple]] = []  # fd, asyncio's accept callback, its args
        selector = getattr(loop, "_selector", None)
        for sock in sockets:
            fd = sock.fileno()
            try:
                handle = selector.get_key(fd).data[0]
            except (AttributeError, KeyError, TypeError, IndexError, ValueError):
                handle = None
            if not isinstance(handle, asyncio.Handle):
                log.warning("accept rate: cannot pause this event loop's listening sockets; no limit")
                self._readers = []
                return
            self._readers.append((fd, handle._callback, handle._args))  # remove_reader clears the handle

    def accepted(self) -> float:
        """A TCP connection was accepted: take a token; out of tokens, stop accepting. The
        seconds until this connection's token (0: now): its reading waits that long."""
        wait = self.rate.take(self.loop.time())
        if wait > 0 and not self.paused and self._readers and not self._closed:
            self.paused = True
            self.rate.pauses += 1
            for fd, _, _ in self._readers:
                self.loop.remove_reader(fd)
            self._timer = self.loop.call_later(wait, self._resume)
        return wait if self._readers else 0.0

    def _resume(self) -> None:
        self._timer = None
        if self._closed:
            return
        wait = self.rate.wait_s(self.loop.time())  # connections of the last burst may owe more
        if wait > 0:
            self._timer = self.loop.call_later(wait, self._resume)
            return
        self.paused = False
        for fd, callback, args in self._readers:
            self.loop.add_reader(fd, callback, *args)

    def close(self) -> None:
        """The server closes its sockets: never resume."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
