"""Who may hold a connection: separate budgets before and after ``hello`` (sans I/O).

A websocket that has not sent a valid ``hello`` yet is *unauthenticated*; it costs the
server a socket and a session but has proved nothing. Such connections get their own
small budget (``max_unauthenticated``) and a deadline (the server closes them 1008 when
``hello`` does not come in time). When the budget is full a newcomer is not refused:
the *oldest* unauthenticated connection is closed (1013, try again later) to make
room. So a flood of connections that never say hello evicts itself, and an honest
client, which sends ``hello`` within milliseconds, is refused only when
``max_authenticated`` authenticated clients are already connected (HTTP 503).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class Admission:
    """Counts connections by state; the server asks it at each step and acts on the answer."""

    def __init__(self, max_authenticated: int, max_unauthenticated: int):
        if max_authenticated < 1 or max_unauthenticated < 1:
            raise ValueError(f"connection budgets must be >= 1, got {max_authenticated} and {max_unauthenticated}")
        self.max_authenticated = max_authenticated
        self.max_unauthenticated = max_unauthenticated
        self._waiting: OrderedDict[Hashable, None] = OrderedDict()  # oldest first
        self._authenticated: set[Hashable] = set()
        self.evicted = 0  # unauthenticated connections closed to make room
        self.refused = 0  # handshakes answered 503 (authenticated budget full)

    @property
    def unauthenticated(self) -> int:
        return len(self._waiting)

    @property
    def authenticated(self) -> int:
        return len(self._authenticated)

    def full(self) -> bool:
        """True when a new handshake must be refused (every authenticated slot taken)."""
        if len(self._authenticated) >= self.max_authenticated:
            self.refused += 1
            return True
        return False

    def opened(self, conn: Hashable) -> list[Hashable]:
        """``conn`` finished its websocket handshake; returns the connections to close
        (oldest unauthenticated ones beyond the budget) so that it fits."""
        self._waiting[conn] = None
        evict = []
        while len(self._waiting) > self.max_unauthenticated:
            old, _ = self._waiting.popitem(last=False)
            evict.append(old)
        self.evicted += len(evict)
        return evict

    def authenticate(self, conn: Hashable) -> bool:
        """``conn`` sent a valid hello. False (close it, 1013) when it was evicted meanwhile
        or every authenticated slot is taken."""
        if conn not in self._waiting:  # evicted (and being closed) before its hello came
            return False
        del self._waiting[conn]
        if len(self._authenticated) >= self.max_authenticated:
            return False
        self._authenticated.add(conn)
        return True

    def closed(self, conn: Hashable) -> None:
        self._waiting.pop(conn, None)
        self._authenticated.discard(conn)


class AcceptRate:
    """A token bucket on accepted connections (sans I/O): ``rate`` per second sustained,
    ``burst`` at once. Every accepted TCP connection takes a token, whatever it turns out to
    be; when the bucket is empty the server stops accepting (``take`` says for how long), so
    a flood of connections waits in the kernel's listen backlog, costing the event loop
    nothing, instead of costing it a websocket handshake (and an eviction) each. Clients
    already connected are never touched; a new client waits for its turn, it is not refused."""

    def __init__(self, rate: float, burst: float):
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"accept rate must be > 0 per s and burst >= 1, got {rate} and {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self._at: float | None = None  # time tokens was last brought up to date
        self.accepted = 0
        self.pauses = 0  # times accepting stopped

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self._at) * self.rate)
        self._at = now

    def take(self, now: float) -> float:
        """One connection accepted at ``now`` (s, any monotonic clock): the seconds the server
        must stop accepting from now on (0: go on). Connections accepted in one burst before
        the pause took effect leave the bucket in debt; the pause then lasts until it is paid."""
        self._refill(now)
        self.tokens -= 1.0
        self.accepted += 1
        return self.wait_s(now)

    def refund(self) -> None:
        """Give back the token of a connection that turned out not to need one (a plain
        HTTP request: answered and closed by its own timeouts, not a websocket)."""
        self.tokens = min(self.burst, self.tokens + 1.0)
        self.accepted -= 1

    def wait_s(self, now: float) -> float:
        """Seconds from ``now`` until the bucket is out of debt (0 if it is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 0.0 else -self.tokens / self.rate
