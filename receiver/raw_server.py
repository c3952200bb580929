"""The raw telegram server: the bridge as a network P1 cable.

Home Assistant's DSMR integration (network mode), DSMR Reader and dsmr_parser's own TCP clients
connect to a TCP port and expect the meter's byte stream: telegram after telegram, exactly as
the P1 port sends them. The receiver rebuilds every telegram byte for byte (the meter's CRC
proves it), so it can serve that stream to any number of such clients.

Design, driven by one rule: **a client must never slow the receiver down.**

- `broadcast(telegram)` only appends to per-client queues and pokes the server thread through a
  socket pair; it never touches a client socket, so it returns in microseconds however many
  clients are stuck.
- One server thread multiplexes the listening socket and all clients with `selectors`, writing
  with non-blocking sockets. There is no thread per client to leak and no lock held while
  writing.
- Each client's queue is bounded (`max_queued` telegrams). A client that falls that far behind,
  or makes no write progress for `stall_timeout` seconds while data waits, is disconnected with a
  log line; it can reconnect and resume with the next telegram. The kernel send buffer of client
  sockets is kept small (`send_buffer`) so "behind" is measured in telegrams, not megabytes of
  kernel memory.
- A client only ever receives whole telegrams: a new client starts with the next telegram
  broadcast after it connected, and a partly sent telegram is always completed.
- Whatever a client sends is read and discarded (readers are not expected to talk), which is
  also how a client closing its end is noticed promptly.

**Who gets a slot** (at most `max_clients`, so a misconfigured poller cannot exhaust file
descriptors). A reader that stops reading is already dropped by the queue and stall limits
above; a reader that does read is indistinguishable from Home Assistant, so the only fair
thing to ration is slots per *address*:

- at most `max_clients_per_peer` connections from one address (Home Assistant, DSMR Reader
  and a debugging `nc` on one host need three); more are refused;
- when all slots are taken, a newcomer from an address holding at least two fewer slots than
  the most crowded address takes the newest slot of that address (which is told so in the
  log): one host, or a few, can no longer lock everyone else out. With equal shares (every
  address holding one slot) it is first come, first served: evicting there would only let
  two clients take turns disconnecting each other. Locking Home Assistant out now takes
  `max_clients` different addresses on the network, or a process on Home Assistant's own host;
  a firewall (or `raw.host` = 127.0.0.1 when Home Assistant runs on the same machine) is the
  answer to those.

A refused connection is accepted and closed at once. The first refusal is logged as a
WARNING; while refusals go on, one summary line per minute says how many followed (a flood of
connection attempts must not become a flood of journal lines on the SD card).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["RawServerStats", "RawTelegramServer"]

logger = logging.getLogger(__name__)

_RECV_CHUNK = 4096
_SEND_CHUNK = 65536
#: How often the server thread looks for stalled clients when nothing else happens.
_HOUSEKEEPING_S = 0.5
#: Refusals after the first are summarised once per this many seconds.
_REFUSAL_SUMMARY_S = 60.0
#: Distinct addresses a refusal summary names at most.
_SUMMARY_ADDRESSES = 5


@dataclass(frozen=True, slots=True)
class RawServerStats:
    """Counters for diagnostics: current clients and what happened so far."""

    clients: int
    accepted: int
    telegrams: int
    bytes_sent: int
    #: Clients disconnected because they fell behind or stalled.
    lagging_disconnects: int
    #: Connections refused (all slots taken, or too many from one address).
    refused: int
    #: Clients disconnected to make room for a client from a less crowded address.
    evicted: int = 0


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    peer: str
    #: The peer's address without the port: what slots are rationed by.
    address: str
    #: When it connected (monotonic seconds): the newest is evicted first.
    connected_at: float
    queue: deque[memoryview] = field(default_factory=deque)
    #: Time of the last write progress, or when data started waiting (monotonic seconds).
    progress_at: float = 0.0
    closing: str | None = None
    #: Closed for falling behind (logged as a warning and counted), not for leaving.
    lagging: bool = False
    sent: int = 0


class RawTelegramServer:
    """Stream every rebuilt telegram to every connected TCP client (see the module docstring).

    Use `start()` (binds; raises OSError with a clear message if it cannot) and `close()`, or use
    it as a context manager. `port` is the bound port, useful with `port=0`. The default
    bind address is loopback; the daemon passes the address users configure (often "0.0.0.0"
    so that Home Assistant on another machine can connect).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_clients: int = 16,
        max_clients_per_peer: int = 4,
        max_queued: int = 32,
        stall_timeout: float = 60.0,
        send_buffer: int | None = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"raw server port {port} is outside 0..65535")
        if max_clients < 1 or max_queued < 1:
            raise ValueError("max_clients and max_queued must be at least 1")
        if max_clients_per_peer < 1:
            raise ValueError("max_clients_per_peer must be at least 1")
        if not stall_timeout > 0:
            raise ValueError("stall_timeout must be positive")
        self._host = host
        self._requested_port = port
        self._max_clients = max_clients
        self._max_per_peer = max_clients_per_peer
        self._max_queued = max_queued
        self._stall_timeout = stall_timeout
        self._send_buffer = send_buffer
        self._clock = clock
        self._lock = threading.Lock()
        self._clients_changed = threading.Condition(self._lock)
        self._clients: dict[int, _Client] = {}
        self._listener: socket.socket | None = None
        self._bound_port = 0
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        #: `close()` was called (the thread ending is then expected, not a failure).
        self._close_requested = False
        self._close_deadline = 0.0
        self._accepted = 0
        self._telegrams = 0
        self._bytes_sent = 0
        self._lagging = 0
        self._refused = 0
        self._evicted = 0
        self._refusals = _RefusalLog()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The port actually bound (after `start()`), else the requested one."""
        return self._bound_port or self._requested_port

    @property
    def host(self) -> str:
        return self._host

    def start(self) -> None:
        """Bind and start serving in a background thread."""
        if self._thread is not None:
            raise RuntimeError("RawTelegramServer.start() called twice")
        try:
            listener = socket.create_server(
                (self._host, self._requested_port), reuse_port=False, backlog=16
            )
        except OSError as exc:
            hint = " (already in use)" if exc.errno == errno.EADDRINUSE else ""
            raise OSError(
                exc.errno,
                f"raw telegram server cannot listen on {self._host}:{self._requested_port}"
                f"{hint}: {exc.strerror or exc}",
            ) from exc
        listener.setblocking(False)
        self._listener = listener
        self._bound_port = int(listener.getsockname()[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._serve, name="raw-telegram-server", daemon=True)
        self._thread.start()
        logger.info("raw telegram server listening on %s:%d", self._host, self.port)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, give clients up to `timeout` s for what is queued, then close all."""
        if self._thread is None:
            return
        with self._lock:
            self._closing = True
            self._close_requested = True
            self._close_deadline = self._clock() + timeout
        self._wake()
        self._thread.join(timeout + 1.0)
        self._thread = None
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        logger.info("raw telegram server on port %d closed", self.port)

    def __enter__(self) -> RawTelegramServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ feeding

    def broadcast(self, telegram: bytes) -> None:
        """Queue `telegram` for every connected client; never blocks, never raises for I/O."""
        if not telegram:
            return
        view = memoryview(bytes(telegram))
        with self._lock:
            if self._closing or self._thread is None:
                return
            self._telegrams += 1
            now = self._clock()
            for client in self._clients.values():
                if client.closing:
                    continue
                if len(client.queue) >= self._max_queued:
                    client.closing = (
                        f"fell {len(client.queue)} telegrams behind (limit {self._max_queued})"
                    )
                    client.lagging = True
                    continue
                if not client.queue:
                    client.progress_at = now
                client.queue.append(view)
        self._wake()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                self._wake_w.send(b"\0")

    # ------------------------------------------------------------------ observing

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def problem(self) -> str | None:
        """Why the server no longer serves, for the watchdog; None while it runs (or before
        `start()` / after `close()`)."""
        thread = self._thread
        with self._lock:
            requested = self._close_requested
        if thread is not None and not requested and not thread.is_alive():
            return "the raw telegram server thread is not running"
        return None

    def wait_for_clients(self, count: int, timeout: float) -> bool:
        """Block until at least `count` clients are connected (True) or `timeout` passes."""
        with self._clients_changed:
            return self._clients_changed.wait_for(lambda: len(self._clients) >= count, timeout)

    def stats(self) -> RawServerStats:
        with self._lock:
            return RawServerStats(
                clients=len(self._clients),
                accepted=self._accepted,
                telegrams=self._telegrams,
                bytes_sent=self._bytes_sent,
                lagging_disconnects=self._lagging,
                refused=self._refused,
                evicted=self._evicted,
            )

    # ------------------------------------------------------------------ server thread

    def _serve(self) -> None:
        try:
            self._serve_loop()
        except Exception:
            # Never expected; a dead server thread must at least say so.
            logger.exception("raw telegram server thread failed; no more telegrams are served")
        finally:
            self._shutdown_all()

    def _serve_loop(self) -> None:
        assert self._listener is not None and self._wake_r is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, "listen")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        registered: dict[int, int] = {}  # fd -> events currently registered
        try:
            while True:
                with self._lock:
                    closing = self._closing
                    deadline = self._close_deadline
                    pending = any(c.queue for c in self._clients.values())
                if closing and (not pending or self._clock() >= deadline):
                    return
                if closing and self._listener.fileno() >= 0:
                    selector.unregister(self._listener)
                    self._listener.close()
                self._sync_registrations(selector, registered)
                for key, events in selector.select(_HOUSEKEEPING_S):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(BlockingIOError, OSError):
                            self._wake_r.recv(4096)
                    else:
                        client: _Client = key.data
                        if events & selectors.EVENT_READ:
                            self._read(client)
                        if events & selectors.EVENT_WRITE and not client.closing:
                            self._write(client)
                self._reap(selector, registered)
        finally:
            selector.close()

    def _sync_registrations(
        self, selector: selectors.BaseSelector, registered: dict[int, int]
    ) -> None:
        """Watch each client for reading always, and for writing while it has data queued."""
        with self._lock:
            clients = list(self._clients.values())
        for client in clients:
            fd = client.sock.fileno()
            if fd < 0:
                continue
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.queue else 0)
            current = registered.get(fd)
            if current is None:
                selector.register(client.sock, wanted, client)
            elif current != wanted:
                selector.modify(client.sock, wanted, client)
            registered[fd] = wanted

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("raw telegram server: accept failed: %s", exc)
                return
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            peer = f"{host}:{address[1]}" if isinstance(address, tuple) else host
            now = self._clock()
            with self._lock:
                refusal = self._admit(host, peer)
                if refusal is not None:
                    self._refused += 1
            if refusal is not None:
                self._refusals.refused(now, peer, host, refusal)
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._send_buffer:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
            with self._lock:
                self._clients[sock.fileno()] = _Client(
                    sock, peer, host, connected_at=now, progress_at=now
                )
                self._accepted += 1
                self._clients_changed.notify_all()
            logger.info("raw telegram server: client %s connected", peer)

    def _admit(self, host: str, peer: str) -> str | None:
        """Why a new connection from `host` is refused, or None; may mark a client of the most
        crowded address for eviction (see the module docstring). Called with the lock held."""
        active = [c for c in self._clients.values() if not c.closing]
        shares = Counter(c.address for c in active)
        if shares[host] >= self._max_per_peer:
            return f"already {shares[host]} connections from {host} (limit {self._max_per_peer})"
        if len(active) < self._max_clients:
            return None
        crowded, held = shares.most_common(1)[0]
        if held < shares[host] + 2:
            return f"all {self._max_clients} client slots are taken"
        victim = max((c for c in active if c.address == crowded), key=lambda c: c.connected_at)
        victim.closing = (
            f"evicted to make room for {peer} ({crowded} held {held} of {self._max_clients} slots)"
        )
        self._evicted += 1
        return None

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(_RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            client.closing = f"connection error: {exc}"
            return
        if not data:
            client.closing = "closed by client"

    def _write(self, client: _Client) -> None:
        while True:
            with self._lock:
                if not client.queue:
                    return
                head = client.queue[0]
            try:
                sent = client.sock.send(head[:_SEND_CHUNK])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                client.closing = f"connection error: {exc}"
                return
            with self._lock:
                client.progress_at = self._clock()
                client.sent += sent
                self._bytes_sent += sent
                if sent >= len(head):
                    client.queue.popleft()
                else:
                    client.queue[0] = head[sent:]

    def _reap(self, selector: selectors.BaseSelector, registered: dict[int, int]) -> None:
        """Close clients that are gone, behind, or stalled; summarise refusals."""
        now = self._clock()
        self._refusals.flush(now)
        with self._lock:
            for client in self._clients.values():
                if (
                    not client.closing
                    and client.queue
                    and now - client.progress_at > self._stall_timeout
                ):
                    client.closing = f"made no progress for {self._stall_timeout:g} s"
                    client.lagging = True
            doomed = [(fd, c) for fd, c in self._clients.items() if c.closing]
            for fd, _ in doomed:
                del self._clients[fd]
            if doomed:
                self._clients_changed.notify_all()
        for fd, client in doomed:
            if registered.pop(fd, None) is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    selector.unregister(client.sock)
            reason = client.closing or ""
            if client.lagging:
                with self._lock:
                    self._lagging += 1
                logger.warning("raw telegram server: disconnecting %s: it %s", client.peer, reason)
            else:
                logger.info("raw telegram server: client %s disconnected (%s)", client.peer, reason)
            self._close_socket(client.sock)

    @staticmethod
    def _close_socket(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _shutdown_all(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._closing = True
            self._clients_changed.notify_all()
        for client in clients:
            self._close_socket(client.sock)
        if self._listener is not None and self._listener.fileno() >= 0:
            self._listener.close()


class _RefusalLog:
    """The first refused connection at WARNING, then one summary per minute while refusals
    continue; a quiet minute makes the next refusal news again. Used by the server thread
    only."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._count = 0
        self._addresses: Counter[str] = Counter()

    def refused(self, now: float, peer: str, host: str, reason: str) -> None:
        self.flush(now)  # a window that ended before this refusal is closed first
        if self._since is None:
            self._since = now
            logger.warning(
                "raw telegram server: refusing %s: %s (further refusals are summarised once a "
                "minute)",
                peer,
                reason,
            )
            return
        self._count += 1
        if host in self._addresses or len(self._addresses) < 1000:
            self._addresses[host] += 1

    def flush(self, now: float) -> None:
        if self._since is None or now - self._since < _REFUSAL_SUMMARY_S:
            return
        if not self._count:
            self._since = None
            return
        logger.warning(
            "raw telegram server: refused %d more connections in the last %.0f s, from %s",
            self._count,
            now - self._since,
            _top_addresses(self._addresses.most_common(), len(self._addresses)),
        )
        self._since = now
        self._count = 0
        self._addresses.clear()


def _top_addresses(counted: Iterable[tuple[str, int]], distinct: int) -> str:
    shown = [f"{host} ({n})" for host, n in list(counted)[:_SUMMARY_ADDRESSES]]
    more = distinct - len(shown)
    return ", ".join(shown) + (f" and {more} more addresses" if more > 0 else "")
