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

Clients beyond `max_clients` are accepted and closed at once with a log line, so a
misconfigured poller cannot exhaust file descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RawServerStats", "RawTelegramServer"]

logger = logging.getLogger(__name__)

_RECV_CHUNK = 4096
_SEND_CHUNK = 65536
#: How often the server thread looks for stalled clients when nothing else happens.
_HOUSEKEEPING_S = 0.5


@dataclass(frozen=True, slots=True)
class RawServerStats:
    """Counters for diagnostics: current clients and what happened so far."""

    clients: int
    accepted: int
    telegrams: int
    bytes_sent: int
    #: Clients disconnected because they fell behind or stalled.
    lagging_disconnects: int
    #: Connections refused because `max_clients` were connected.
    refused: int


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    peer: str
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
        max_queued: int = 32,
        stall_timeout: float = 60.0,
        send_buffer: int | None = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"raw server port {port} is outside 0..65535")
        if max_clients < 1 or max_queued < 1:
            raise ValueError("max_clients and max_queued must be at least 1")
        if not stall_timeout > 0:
            raise ValueError("stall_timeout must be positive")
        self._host = host
        self._requested_port = port
        self._max_clients = max_clients
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
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
            with self._lock:
                full = len(self._clients) >= self._max_clients
                if full:
                    self._refused += 1
            if full:
                logger.warning(
                    "raw telegram server: refusing %s, already %d clients connected",
                    peer,
                    self._max_clients,
                )
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._send_buffer:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
            with self._lock:
                self._clients[sock.fileno()] = _Client(sock, peer, progress_at=self._clock())
                self._accepted += 1
                self._clients_changed.notify_all()
            logger.info("raw telegram server: client %s connected", peer)

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
        """Close clients that are gone, behind, or stalled."""
        now = self._clock()
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
