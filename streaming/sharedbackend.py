"""One process owns the learned refiner's backend; generator workers call it through pipes.

Generator workers (``streaming.genprocs``) each opened their own model. On a GPU that is one
CUDA context per worker, and contexts time-slice the card: on an H200, 12 learned workers
made 102-107 uncached tiles/s against one process's 152-174, each spinning ~120 ms of CPU a
tile while it waited its turn (docs/BENCHMARKS.md, 2026-12-06). Here the server process keeps
the one backend: ``BackendServer`` runs ``backend.run_level`` on one thread for every
worker, and a worker's ``RemoteBackend`` sends it the network's inputs (parents, noise
coordinates, spacing, context: host work stays in the worker) and waits for the child.

The bytes do not move: the workers' ``LearnedRefiner`` computes the same inputs, and the
backend is the one the thread server runs (the compiled one pads every call to its one batch
bucket; the CPU reference runs one tile at a time), so a tile's bytes do not depend on which
process asked. ``RemoteBackend.name`` is the owner's, so the model id is the same.

``BackendProcess`` runs the same ``BackendServer`` in a process of its own, which builds its
backend there and takes the workers' connections on a Unix socket. In the server's process
the backend thread shared the GIL with the event loop: on an H100, 12 workers calling it made
102.5 / 127.6 uncached tiles/s (plane / earth) with the main process at 7.4-9 ms a tile and
the GPU at 13 %, against the thread server's 204.6 / 169.5 (docs/BENCHMARKS_LOG.md, 2026-12-06).

The arrays travel through shared memory, not the pipe: each ``RemoteBackend`` makes one POSIX
shared-memory segment (``SharedSegment``), writes a request's arrays into it and sends only a
header (names, dtypes, shapes, offsets); the server reads them in place and writes the child
back at the segment's start. A 16-crop request is ~4 MB of parents and ~5 MB of child: pickled
through the socket that was ~4 ms of the server's CPU and a 14.5 ms round trip on the 2-core
box, 1.6 ms through the segment (the one thread that serves every worker was the limit on an
H100: 60 % of a core at 120 tiles/s, the GPU at 0-15 %). Where /dev/shm lacks the room (a
container's 64 MB default) the worker stays on the pipe; the bytes are the same either way.
"""

from __future__ import annotations

import os
import signal
import threading
from multiprocessing import connection
from multiprocessing.connection import Connection

import numpy as np

_ALIGN = 64  # bytes: each array of a request starts on a cache line
SHM_DIR = "/dev/shm"


def _layout(arrays) -> tuple[list, int]:
    """[(dtype, shape, offset) or None per array], total bytes: the arrays packed at _ALIGN."""
    specs, at = [], 0
    for a in arrays:
        if a is None:
            specs.append(None)
            continue
        specs.append((a.dtype.str, a.shape, at))
        at += -(-a.nbytes // _ALIGN) * _ALIGN
    return specs, at


class SharedSegment:
    """A POSIX shared-memory segment (``multiprocessing.shared_memory``) holding a request's arrays
    and its child. A worker ``make``s its own, grows it by replacing it and unlinks it on
    ``close()`` (multiprocessing's resource tracker does if the process dies); the server
    ``attach``es by name and closes its view, unlinking only when the worker is gone. ``make``
    returns None where /dev/shm has not twice the room (a full tmpfs answers a write with SIGBUS,
    not an error) or segments cannot be made."""

    def __init__(self, shm):
        self.shm = shm

    @classmethod
    def make(cls, nbytes: int):
        from multiprocessing import shared_memory

        nbytes = max(1 << 20, -(-int(nbytes) // (1 << 20)) * (1 << 20))
        try:
            st = os.statvfs(SHM_DIR)
            if st.f_bavail * st.f_frsize < 2 * nbytes:
                return None
            return cls(shared_memory.SharedMemory(create=True, size=nbytes))
        except (OSError, ValueError):
            return None

    @classmethod
    def attach(cls, name: str):
        """The server's view of a worker's segment. Workers and the backend process are children
        of the server, so they share multiprocessing's resource tracker: the attach registers the
        name again (a set: no-op) and the unlink unregisters it; nothing is left behind."""
        from multiprocessing import shared_memory

        return cls(shared_memory.SharedMemory(name=name))

    @property
    def name(self) -> str:
        return self.shm.name

    @property
    def size(self) -> int:
        return self.shm.size

    def write(self, arrays) -> list:
        """Copy ``arrays`` (numpy or None) in, packed from the start; their specs (``_layout``)."""
        specs, _ = _layout(arrays)
        for a, spec in zip(arrays, specs, strict=True):
            if a is not None:
                np.ndarray(a.shape, a.dtype, self.shm.buf, spec[2])[...] = a
        return specs

    def views(self, specs) -> list:
        """The arrays of ``specs`` in place (None where a spec is None)."""
        return [None if sp is None else np.ndarray(tuple(sp[1]), np.dtype(sp[0]), self.shm.buf, sp[2]) for sp in specs]

    def read(self, dtype: str, shape, offset: int) -> np.ndarray:
        """A copy of the array at ``offset`` (the segment is overwritten by the next request)."""
        return np.array(self.views([(dtype, shape, offset)])[0])

    def close(self, unlink: bool = True) -> None:
        """Close this view and, with ``unlink``, remove the segment (a worker's own, or a gone
        worker's on the server)."""
        try:
            self.shm.close()
        except (OSError, BufferError):  # a view still alive: the mapping goes with the last of them
            pass
        if unlink:
            try:
                self.shm.unlink()
            except OSError:  # unlinked already (the worker, or the server for a gone worker)
                pass


def merge_unit(backend) -> int | None:
    """The batch unit requests can be merged in without moving a byte, or None: a backend of
    one batch bucket (the compiled one pads every call to it, by repeating its last crop) or the
    CPU reference (one tile at a time)."""
    buckets = getattr(backend, "buckets", None)
    if buckets is not None and len(buckets) == 1:
        return int(buckets[0])
    if getattr(backend, "name", "") == "torch" and str(getattr(backend, "device", "")) == "cpu":
        return 1
    return None


def _groups(pending, unit, many: bool = False):
    """Requests that can share one call: with a backend's ``run_many`` (``many``), the same crop
    shape and context kind, any seed and level; else the same seed, level, crop shape and
    context kind (one ``run_level`` call, padded per request to the ``unit``)."""
    if unit is None and not many:
        return [[p] for p in pending]
    out: dict = {}
    for c, a in pending:
        parents5, seed, level, ctx = a[0], a[1], a[2], a[7] if len(a) > 7 else None
        key = (parents5.shape[1:], None if ctx is None else ctx.shape[1:])
        if not many:
            key = (seed, level) + key
        out.setdefault(key, []).append((c, a))
    return list(out.values())


def _concat(args: list, unit: int) -> tuple:
    """run_level's arguments of several requests as one: each request's arrays padded to a
    multiple of ``unit`` by repeating its last crop (what the backend does to it alone)."""
    def pad(a):
        n = -(-a.shape[0] // unit) * unit
        return a if n == a.shape[0] else np.concatenate([a, np.repeat(a[-1:], n - a.shape[0], 0)])

    cat = lambda i: np.concatenate([pad(a[i]) for a in args])
    ctx = None if len(args[0]) < 8 or args[0][7] is None else cat(7)
    return cat(0), args[0][1], args[0][2], cat(3), cat(4), cat(5), cat(6), ctx


class BackendServer:
    """Runs ``backend.run_level`` for the workers connected with ``connect()`` on its own
    thread (a GPU backend's graphs and stream stay on one thread): the requests waiting at
    once go in one call: through the backend's ``run_many`` (any seeds and levels) where it
    has one, else where ``merge_unit`` allows (the same seed and level), else one at a time."""

    def __init__(self, backend, counter=None, rounds_counter=None):
        """``counter``, ``rounds_counter``: shared ``multiprocessing.Value``s the requests and
        the backend calls are counted in too (the owner of a ``BackendProcess`` reads them)."""
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.calls = 0  # requests answered
        self.merged = 0  # of them, answered by a call shared with others
        self.rounds = 0  # backend calls made (run_many or run_level): requests / rounds = merging
        self._rounds_counter = rounds_counter
        self._unit = merge_unit(backend)
        self._many = callable(getattr(backend, "run_many", None))
        self._counter = counter
        self._conns: list[Connection] = []
        self._segments: dict = {}  # connection -> its worker's SharedSegment (attached)
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()  # a new connection or close() wakes the wait
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="shared-backend", daemon=True)
        self._thread.start()

    def connect(self) -> Connection:
        """A new worker's end of a pipe to this server (pass it to the worker process)."""
        import multiprocessing

        ours, theirs = multiprocessing.Pipe(duplex=True)
        self.attach(ours)
        return theirs

    def attach(self, conn: Connection) -> None:
        """Serve one more connection (this server's end of it)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the shared backend is closed")
            self._conns.append(conn)
        os.write(self._wake_w, b"c")

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                conns = list(self._conns)
            pending = []  # (connection, run_level's arguments) of every worker waiting now
            for c in connection.wait(conns + [self._wake_r]):
                if c == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                try:
                    msg = c.recv()
                except (EOFError, OSError):  # that worker is gone (a restart connects anew)
                    self._drop(c)
                    continue
                try:
                    pending.append((c, self._arguments(c, msg)))
                except Exception as exc:  # noqa: BLE001  (a request it cannot read: its own answer)
                    self._send(c, ("error", f"{type(exc).__name__}: {exc}"))
            for group in _groups(pending, self._unit, self._many):
                for c, out in zip([c for c, _ in group], self._run(group), strict=True):
                    self.calls += 1
                    if self._counter is not None:
                        with self._counter.get_lock():
                            self._counter.value += 1
                    self._send(c, self._reply(c, out))

    def _arguments(self, c: Connection, msg) -> tuple:
        """run_level's arguments of a request: pickled whole (the pipe), or ("shm", segment
        name, seed, level, specs): the arrays read in place from the worker's segment."""
        if not (isinstance(msg, tuple) and msg and isinstance(msg[0], str) and msg[0] == "shm"):
            return msg
        _, name, seed, level, specs = msg
        seg = self._segments.get(c)
        if seg is None or seg.name != name:  # the worker's first request, or it grew its segment
            if seg is not None:
                seg.close(unlink=False)  # the worker unlinked it
            seg = self._segments[c] = SharedSegment.attach(name)
        a = seg.views(specs)
        return (a[0], seed, level, a[1], a[2], a[3], a[4], a[5])

    def _reply(self, c: Connection, out) -> tuple:
        """A shared-memory request's child goes back at its segment's start when it fits
        (("ok-shm", dtype, shape, 0)); else pickled, as on the pipe."""
        seg = self._segments.get(c)
        if seg is None or out[0] != "ok" or out[1].nbytes > seg.size:
            return out
        return ("ok-shm", *seg.write([out[1]])[0])

    def _send(self, c: Connection, msg) -> None:
        try:
            c.send(msg)
        except (BrokenPipeError, OSError):
            self._drop(c)

    def _run(self, group) -> list:
        """("ok", child) or ("error", text) per request of ``group``: one backend call for all
        of them (each padded to whole batches of the unit, so every crop's batch is the one it
        would have had alone: the same bytes), each alone if that call fails."""
        if len(group) > 1:
            try:
                args = [a for _, a in group]
                self._round()
                if self._many:
                    children = self.backend.run_many(args)
                    self.merged += len(group)
                    return [("ok", np.ascontiguousarray(c)) for c in children]
                sizes = [a[0].shape[0] for a in args]
                child = self.backend.run_level(*_concat(args, self._unit))
                self.merged += len(group)
                out, at = [], 0
                for b in sizes:
                    out.append(("ok", np.ascontiguousarray(child[at : at + b])))
                    at += -(-b // self._unit) * self._unit
                return out
            except Exception:  # noqa: BLE001  (one bad request: each alone, each its own answer)
                pass
        out = []
        for _, args in group:
            try:
                self._round()
                out.append(("ok", np.ascontiguousarray(self.backend.run_level(*args))))
            except Exception as exc:  # noqa: BLE001  (the worker raises it for its block)
                out.append(("error", f"{type(exc).__name__}: {exc}"))
        return out

    def _round(self) -> None:
        self.rounds += 1
        if self._rounds_counter is not None:
            with self._rounds_counter.get_lock():
                self._rounds_counter.value += 1

    def _drop(self, c: Connection) -> None:
        with self._lock:
            if c in self._conns:
                self._conns.remove(c)
        seg = self._segments.pop(c, None)
        if seg is not None:
            seg.close()  # its worker is gone
        c.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(10.0)
        for c in self._conns:
            c.close()
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)


class BackendProcess:
    """A ``BackendServer`` in a process of its own: ``make_backend()`` (picklable) builds the
    backend there; workers connect to it on a Unix socket (``connect()`` gives the address
    and key a worker's ``RemoteBackend`` dials). Started and ready when the constructor
    returns; ``calls`` counts the requests answered and ``rounds`` the backend calls made for
    them; ``close()`` stops it."""

    def __init__(self, make_backend, start_timeout_s: float = 600.0):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._counter = ctx.Value("q", 0)
        self._rounds = ctx.Value("q", 0)
        ours, theirs = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_backend_main, args=(theirs, make_backend, self._counter, self._rounds),
                                name="worldstream-backend", daemon=True)
        self.proc.start()
        theirs.close()
        self._control = ours
        try:
            if not ours.poll(start_timeout_s):
                raise RuntimeError(f"shared backend process not ready after {start_timeout_s:.0f} s")
            msg = ours.recv()
        except (EOFError, OSError):
            msg = ("failed", f"the process exited with {self.proc.exitcode}")
        except BaseException:
            self.close()
            raise
        if msg[0] != "ready":
            self.close()
            raise RuntimeError(f"shared backend process failed to start: {msg[1]}")
        _, self.address, self._authkey, self.name = msg

    @property
    def calls(self) -> int:
        """Requests answered."""
        return int(self._counter.value)

    @property
    def rounds(self) -> int:
        """Backend calls made for them (fewer than ``calls`` where requests shared a call)."""
        return int(self._rounds.value)

    def connect(self) -> tuple[str, bytes]:
        """What a worker's ``RemoteBackend`` dials: (socket address, key)."""
        return self.address, self._authkey

    def close(self) -> None:
        self._control.close()  # the process sees EOF and stops
        self.proc.join(10.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)


def auto_backends(workers: int) -> int:
    """``serve --gen-backends auto``: one backend process per 4 generator processes, 1 to 3 (3
    for the 12 of a 16-core GPU box: 1.68x one process's uncached tiles/s on an H100, with the
    generator processes then at ~2/3 of a core each; docs/BENCHMARKS.md, 2026-12-06)."""
    return max(1, min(3, int(workers) // 4))


class BackendPool:
    """``n`` ``BackendProcess``es with the same model; each new worker connects to the next one
    in turn. One backend process made ~300 uncached tiles/s on an H100 with 82-98 % of a core
    busy and the GPU 0-27 % (docs/BENCHMARKS_LOG.md, 2026-12-06): its one thread copies, replays and
    waits in turn. Several processes overlap one's host work with another's GPU work, at the
    cost of a CUDA context each. The bytes do not move: every process runs the same backend,
    whose output does not depend on the batch a crop shares (``merge_unit``)."""

    def __init__(self, make_backend, n: int, start_timeout_s: float = 600.0):
        if n < 1:
            raise ValueError(f"a backend pool needs at least one process, got {n}")
        self.procs: list[BackendProcess] = []
        try:
            for _ in range(n):  # one after another (each ready when its constructor returns)
                self.procs.append(BackendProcess(make_backend, start_timeout_s))
        except BaseException:
            self.close()
            raise
        names = {p.name for p in self.procs}
        if len(names) != 1:
            self.close()
            raise RuntimeError(f"the backend processes opened different backends: {sorted(names)}")
        self.name = self.procs[0].name
        self._next = 0

    @property
    def calls(self) -> int:
        return sum(p.calls for p in self.procs)

    @property
    def rounds(self) -> int:
        return sum(p.rounds for p in self.procs)

    def connect(self) -> tuple[str, bytes]:
        """The next process's address (a worker keeps it for its life; a restarted worker takes
        the next)."""
        p = self.procs[self._next % len(self.procs)]
        self._next += 1
        return p.connect()

    def close(self) -> None:
        for p in self.procs:
            p.close()


def _backend_main(control: Connection, make_backend, counter, rounds=None) -> None:
    """The backend process: build the backend, serve every connection until the owner goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the owner stops us
    try:
        key = os.urandom(16)
        server = BackendServer(make_backend(), counter, rounds)
        listener = connection.Listener(family="AF_UNIX", authkey=key)
    except BaseException as exc:  # noqa: BLE001  (reported to the owner, which raises)
        control.send(("failed", f"{type(exc).__name__}: {exc}"))
        return

    def accept() -> None:
        while True:
            try:
                conn = listener.accept()
            except (OSError, EOFError, connection.AuthenticationError):
                if server._closed:
                    return
                continue  # a caller that failed the handshake: the next one
            try:
                server.attach(conn)
            except RuntimeError:  # closed
                conn.close()
                return

    threading.Thread(target=accept, name="shared-backend-accept", daemon=True).start()
    control.send(("ready", listener.address, key, server.name))
    try:
        control.recv()  # blocks until the owner closes its end (or dies)
    except (EOFError, OSError):
        pass
    server.close()
    listener.close()


class RemoteBackend:
    """A worker's stand-in for the owner's backend: the same ``run_level`` and ``name``.
    ``conn``: a pipe to a ``BackendServer`` or a ``BackendProcess.connect()`` address.
    ``shared_memory``: send the arrays through a ``SharedSegment`` (where one can be made; else
    the pipe), or False: always the pipe."""

    def __init__(self, conn, name: str, shared_memory: bool = True):
        if isinstance(conn, tuple):
            address, key = conn
            conn = connection.Client(address, family="AF_UNIX", authkey=key)
        self.conn = conn
        self.name = name
        self.use_shm = bool(shared_memory)
        self.segment: SharedSegment | None = None

    def run_level(self, parents5, seed, level, rows, cols, spacing_m, present, context=None) -> np.ndarray:
        arrays = [None if a is None else np.ascontiguousarray(a)
                  for a in (parents5, rows, cols, spacing_m, present, context)]
        seg = self._segment_for(arrays) if self.use_shm else None
        if seg is None:
            self.conn.send((arrays[0], seed, level, arrays[1], arrays[2], arrays[3], arrays[4], arrays[5]))
        else:
            self.conn.send(("shm", seg.name, seed, level, seg.write(arrays)))
        reply = self.conn.recv()
        if reply[0] == "ok-shm":
            return seg.read(*reply[1:])
        kind, out = reply
        if kind != "ok":
            raise RuntimeError(f"shared backend failed: {out}")
        if seg is not None and out.nbytes > seg.size:  # the child did not fit: room for it next time
            self._grow(max(out.nbytes, seg.size))
        return out

    def _segment_for(self, arrays) -> SharedSegment | None:
        """This worker's segment, made (or grown) to hold the request's arrays and a child of
        up to 4x the parents (a child has 2h - 1 samples a side, less the margins)."""
        _, need = _layout(arrays)
        need = max(need, 4 * arrays[0].nbytes)
        if self.segment is None or self.segment.size < need:
            self._grow(need)
        return self.segment

    def _grow(self, nbytes: int) -> None:
        old, self.segment = self.segment, SharedSegment.make(int(nbytes * 1.25))
        if old is not None:
            old.close()  # the server closes its view when it sees the new name
        if self.segment is None:
            self.use_shm = False  # no room: the pipe from now on

    def close(self) -> None:
        if self.segment is not None:
            self.segment.close()
            self.segment = None
