"""The simulated RF channel across processes on one machine, over loopback UDP.

`p1-lora-tx --radio sim` and `p1-lora-rx --radio sim`, started separately with no further
flags, must hear each other. They meet on a well-known loopback port: `port=` (`--sim-port`),
else $P1LORA_SIM_PORT, else one derived from the key's network id (`network_port`: 24576 plus
the id modulo 8192), so two pairs with different keys on one machine (two demos, two test
runs) each have their own channel instead of counting the other's frames as `wrong_network`;
without a key (`network_id` None) 47868:

- The first process to bind the port is the *hub*. Every other process binds an ephemeral port,
  says `hello` to the hub twice a second and gets `welcome` back.
- A process whose emulated chip starts a frame sends it to the hub (a member) or to every member
  (the hub); the hub relays members' frames to the other members. Every process runs the
  channel physics for its own radios in its own `SimChannel`: the frame starts there when the
  message arrives and lasts its time on air, so collisions, half-duplex and the SNR floors work
  as in-process, in real time.
- When the hub goes away (`bye`, or two seconds without `welcome`), members try to bind the
  well-known port; the kernel lets exactly one succeed, and it becomes the new hub. Frames sent
  during the hand-over are lost, as they would be in a radio outage.
- When the port is held by something that is not a p1-lora hub, binding it fails and nothing
  answers the `hello`s: after `JOIN_WARNING_S` (5 s) without a `welcome` the member logs one
  WARNING naming the port and `--sim-port` / $P1LORA_SIM_PORT, keeps trying, and logs INFO once
  it joins a hub (or wins the freed port).

Path loss between processes: each process may set its own (`--sim-path-loss`); a frame crossing
between two processes sees the larger of the sender's and the receiver's setting, or the
channel default (100 dB) when neither set one. So setting it on either side alone does what
one expects, and it can be changed at run time.

The port is bound to 127.0.0.1 only. Anything on this machine can join the simulation, which is
the point; it carries no secrets beyond what the simulated link itself encrypts.

Test hooks (the process-level fault and attack tests; nothing in the daemons uses them). A test
that binds the port first owns the hub and with it the channel between the daemons:

- `relay_hook` (hub only): called with every member's frame as a `RelayedFrame` before it is
  relayed; return it (changed, e.g. a higher `path_loss_db` to degrade the link) or None to
  drop it. Recording frames here and handing them to `send_frame` later replays them.
- `send_frame(frame)`: put a frame on every other process's air as if `frame.sender` sent it
  (replays, forgeries, bit-flipped copies: a third radio without a third chip).
- `send_fault(pid, hung_tx=True)`: a datagram to the member process `pid` that sets the
  `EmulatorFaults` knobs of its emulated chips, so a running daemon's radio can hang on
  demand. Members accept it only from the hub's port and log a WARNING naming it a test fault.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from p1lora.common.clock import Scheduler
from p1lora.hardware.channel import (
    DEFAULT_NOISE_FIGURE_DB,
    DEFAULT_PATH_LOSS_DB,
    SimChannel,
)
from p1lora.hardware.emulator import AirFrame, AirParams, AntennaPort, SX127xEmulator
from p1lora.hardware.sx127x_registers import BANDWIDTH_CODES

__all__ = [
    "DEFAULT_SIM_PORT",
    "SIM_PORT_ENV",
    "RelayHook",
    "RelayedFrame",
    "UdpChannel",
    "UdpSimOptions",
    "default_sim_port",
    "network_port",
]

logger = logging.getLogger(__name__)

DEFAULT_SIM_PORT: Final = 47_868
SIM_PORT_ENV: Final = "P1LORA_SIM_PORT"
#: Ports derived from a network id: 24576..32767, below Linux's ephemeral range (32768..60999,
#: /proc/sys/net/ipv4/ip_local_port_range), so a member's ephemeral port never takes a hub's.
NETWORK_PORT_BASE: Final = 24_576
NETWORK_PORT_SPAN: Final = 8_192
MAGIC: Final = "p1lora-sim/1"
HELLO_INTERVAL_S: Final = 0.5
HUB_TIMEOUT_S: Final = 2.0
#: A member that has had no `welcome` for this long says so once (WARNING): usually something
#: other than a p1-lora hub holds the rendezvous port, and the radio would otherwise hear
#: nothing without a word.
JOIN_WARNING_S: Final = 5.0
MEMBER_TIMEOUT_S: Final = 3.0
_RECV_TIMEOUT_S = 0.1
_MAX_DATAGRAM = 4096


def network_port(network_id: bytes) -> int:
    """The loopback port of the simulated channel for the key with this network id: two
    different keys share one only if their ids are equal modulo 8192 (1 pair in 8192)."""
    return NETWORK_PORT_BASE + int.from_bytes(network_id, "big") % NETWORK_PORT_SPAN


def default_sim_port(network_id: bytes | None = None) -> int:
    """The port from $P1LORA_SIM_PORT, else `network_port(network_id)`, else 47868
    (ValueError for a bad value)."""
    text = os.environ.get(SIM_PORT_ENV, "").strip()
    if not text:
        return DEFAULT_SIM_PORT if network_id is None else network_port(network_id)
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{SIM_PORT_ENV}={text!r} is not a port number (1..65535)")
    return int(text)


@dataclass(frozen=True, slots=True)
class UdpSimOptions:
    """Per-process simulation settings (the `--sim-*` options of the daemons)."""

    port: int | None = None
    host: str = "127.0.0.1"
    path_loss_db: float | None = None
    noise_figure_db: float = DEFAULT_NOISE_FIGURE_DB
    fading_sigma_db: float = 0.0
    loss_probability: float = 0.0
    seed: int | None = None
    capture: bool = True
    #: The key's network id: the default port is derived from it (`default_sim_port`).
    network_id: bytes | None = None

    def resolved_port(self) -> int:
        return self.port if self.port is not None else default_sim_port(self.network_id)


@dataclass(slots=True)
class UdpStats:
    frames_out: int = 0
    frames_in: int = 0
    relayed: int = 0
    malformed: int = 0
    elections_won: int = 0
    #: Frames the `relay_hook` dropped, and frames sent with `send_frame`.
    hook_dropped: int = 0
    sent_frames: int = 0


@dataclass(frozen=True, slots=True)
class RelayedFrame:
    """A frame as it crosses the loopback channel (the test hooks' view of one `frame` message).

    `sender` is the origin process's node id (receivers ignore frames carrying their own id);
    `path_loss_db` is the sender's setting (None: the receiver's or the channel default);
    `airtime` is how long the frame occupies the receivers' air.
    """

    sender: str
    frame_id: int
    params: AirParams
    payload: bytes
    tx_power_dbm: float
    airtime: float
    path_loss_db: float | None = None
    freq_offset_hz: float = 0.0


#: `UdpChannel.relay_hook`: the frame to relay instead (changed or not), or None to drop it.
RelayHook = Callable[[RelayedFrame], RelayedFrame | None]

#: `send_fault` knobs: name -> validator of the value (the `EmulatorFaults` fields).
_FAULT_KNOBS: Final[dict[str, Callable[[object], object]]] = {
    "hung_tx": lambda value: _bool(value, "hung_tx"),
    "drop_dio0_edges": lambda value: _int(value, 0, 1_000_000, "drop_dio0_edges"),
}


def _params_to_json(params: AirParams) -> dict[str, Any]:
    return dataclasses.asdict(params)


def _int(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} {value!r} is not an integer in {low}..{high}")
    return value


def _float(value: object, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} {value!r} is not a number")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{what} {number} is outside {low}..{high}")
    return number


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a boolean")
    return value


def _params_from_json(data: object) -> AirParams:
    if not isinstance(data, dict):
        raise ValueError("params is not an object")
    bw = _int(data.get("bw_hz"), 0, 500_000, "bandwidth")
    if bw not in BANDWIDTH_CODES:
        raise ValueError(f"bandwidth {bw} is not a LoRa bandwidth")
    return AirParams(
        frf=_int(data.get("frf"), 0, (1 << 24) - 1, "frf"),
        sf=_int(data.get("sf"), 6, 12, "sf"),
        bw_hz=bw,
        cr=_int(data.get("cr"), 5, 8, "cr"),
        implicit_header=_bool(data.get("implicit_header"), "implicit_header"),
        crc_on=_bool(data.get("crc_on"), "crc_on"),
        ldro=_bool(data.get("ldro"), "ldro"),
        preamble=_int(data.get("preamble"), 0, 65_535, "preamble"),
        sync_word=_int(data.get("sync_word"), 0, 255, "sync_word"),
        invert_iq=_bool(data.get("invert_iq"), "invert_iq"),
        payload_length=_int(data.get("payload_length"), 0, 255, "payload_length"),
    )


class UdpChannel:
    """A `SimChannel` for this process's radios, joined to other processes over loopback UDP."""

    def __init__(
        self,
        scheduler: Scheduler,
        options: UdpSimOptions | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`monotonic` times the network housekeeping (hello, hub hand-over, the join warning);
        tests pass a fake one to step through those timeouts without sleeping.
        """
        self._monotonic = monotonic
        self.options = options or UdpSimOptions()
        self.port = self.options.resolved_port()
        self.scheduler = scheduler
        self.channel = SimChannel(
            scheduler,
            seed=self.options.seed,
            path_loss_db=(
                DEFAULT_PATH_LOSS_DB
                if self.options.path_loss_db is None
                else self.options.path_loss_db
            ),
            noise_figure_db=self.options.noise_figure_db,
            capture=self.options.capture,
            loss_probability=self.options.loss_probability,
            fading_sigma_db=self.options.fading_sigma_db,
        )
        self.channel.on_local_frame = self._forward_frame
        self.channel.on_local_abort = self._forward_abort
        self.stats = UdpStats()
        self.node = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._path_loss_db = self.options.path_loss_db
        self._net_lock = threading.Lock()
        self._members: dict[tuple[str, int], float] = {}
        self._remote: dict[tuple[str, int], AirFrame] = {}
        self._closed = threading.Event()
        self._last_hello = -math.inf
        self._last_hub_contact = monotonic()
        #: When this member last heard `welcome` (or started); and whether it has warned.
        self._last_welcome = self._last_hub_contact
        self._join_warned = False
        #: Test hook, hub only (see the module docstring); runs on the network thread.
        self.relay_hook: RelayHook | None = None
        sock = self._bind_hub()
        if sock is not None:
            self._role = "hub"
            logger.info("simulated radio channel: hub on 127.0.0.1:%d", self.port)
        else:
            sock = self._bind_member()
            self._role = "member"
            logger.info("simulated radio channel: joining the hub on 127.0.0.1:%d", self.port)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._run, name=f"p1lora-sim-udp-{self.port}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ public

    def add_radio(
        self,
        name: str,
        *,
        freq_offset_hz: float = 0.0,
        antenna: AntennaPort = "both",
        position: Sequence[float] | None = None,
    ) -> SX127xEmulator:
        """An emulated chip on this process's side of the channel."""
        return self.channel.add_radio(
            name, freq_offset_hz=freq_offset_hz, antenna=antenna, position=position
        )

    @property
    def role(self) -> str:
        """'hub', 'member' or 'closed'."""
        return "closed" if self._closed.is_set() else self._role

    @property
    def member_count(self) -> int:
        """Members known to this hub (0 on a member)."""
        with self._net_lock:
            return len(self._members)

    @property
    def path_loss_db(self) -> float | None:
        return self._path_loss_db

    def set_path_loss(self, loss_db: float | None) -> None:
        """Change this process's path loss at run time (None: use the other side's/default)."""
        self._path_loss_db = loss_db
        self.channel.set_default_path_loss(
            DEFAULT_PATH_LOSS_DB if loss_db is None else float(loss_db)
        )

    def send_frame(self, frame: RelayedFrame) -> None:
        """Put `frame` on the other processes' air as if `frame.sender` had sent it (test hook).

        The hub sends it to every member; a member sends it to the hub, which relays it. No
        local radio hears it (a radio does not hear its own process's injections).
        """
        self.stats.sent_frames += 1
        self._send_to_peers(_frame_message(frame))

    def send_fault(
        self, pid: int, *, hung_tx: bool | None = None, drop_dio0_edges: int = 0
    ) -> None:
        """Test hook (hub only): set fault knobs on the emulated chips of member process `pid`.

        `hung_tx=True` makes the chips start their next transmissions without ever finishing
        them (until the driver resets the chip); `drop_dio0_edges` swallows that many DIO0
        edges. The member logs a WARNING when it applies them.
        """
        if self._role != "hub":
            raise RuntimeError("only the hub can send test faults")
        faults: dict[str, object] = {}
        if hung_tx is not None:
            faults["hung_tx"] = hung_tx
        if drop_dio0_edges:
            faults["drop_dio0_edges"] = drop_dio0_edges
        self._send_to_peers({"t": "fault", "pid": pid, "faults": faults})

    def close(self) -> None:
        """Leave the simulation (tell the others) and stop the network thread. Idempotent."""
        if self._closed.is_set():
            return
        self._send_to_peers({"t": "bye"})
        self._closed.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)
        with self._net_lock:
            self._sock.close()

    # ------------------------------------------------------------------ sockets

    def _bind_hub(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.options.host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            raise
        sock.settimeout(_RECV_TIMEOUT_S)
        return sock

    def _bind_member(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.options.host, 0))
        sock.settimeout(_RECV_TIMEOUT_S)
        return sock

    def _hub_address(self) -> tuple[str, int]:
        return (self.options.host, self.port)

    def _send(self, message: dict[str, Any], address: tuple[str, int]) -> None:
        message = {"m": MAGIC, "n": self.node, **message}
        data = json.dumps(message, separators=(",", ":")).encode()
        with self._net_lock:
            try:
                self._sock.sendto(data, address)
            except OSError as exc:
                logger.debug("sim UDP send to %s failed: %s", address, exc)

    def _send_to_peers(
        self, message: dict[str, Any], exclude: tuple[str, int] | None = None
    ) -> None:
        if self._role == "hub":
            with self._net_lock:
                members = [addr for addr in self._members if addr != exclude]
            for address in members:
                self._send(message, address)
        else:
            self._send(message, self._hub_address())

    # ------------------------------------------------------------------ local frames out

    def _forward_frame(self, frame: AirFrame) -> None:
        self.stats.frames_out += 1
        message = _frame_message(
            RelayedFrame(
                sender=self.node,
                frame_id=frame.frame_id,
                params=frame.params,
                payload=frame.payload,
                tx_power_dbm=frame.tx_power_dbm,
                airtime=frame.end - frame.start,
                path_loss_db=self._path_loss_db,
                freq_offset_hz=frame.freq_offset_hz,
            )
        )
        self._send_to_peers(message)

    def _forward_abort(self, frame: AirFrame) -> None:
        self._send_to_peers({"t": "abort", "id": frame.frame_id})

    # ------------------------------------------------------------------ network thread

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data, address = self._sock.recvfrom(_MAX_DATAGRAM)
            except TimeoutError:
                pass
            except OSError as exc:
                if self._closed.is_set():
                    break
                logger.debug("sim UDP receive failed: %s", exc)
                self._closed.wait(_RECV_TIMEOUT_S)
            else:
                try:
                    self._handle(data, address)
                except Exception:
                    logger.exception("sim UDP: could not handle a message from %s", address)
            try:
                self._housekeeping(self._monotonic())
            except Exception:
                logger.exception("sim UDP housekeeping failed")

    def _housekeeping(self, now: float) -> None:
        if self._role == "hub":
            with self._net_lock:
                for address, seen in list(self._members.items()):
                    if now - seen > MEMBER_TIMEOUT_S:
                        del self._members[address]
                        logger.info("sim UDP: member %s went silent", address)
            return
        if now - self._last_hub_contact > HUB_TIMEOUT_S:
            self._try_become_hub(now)
        if self._role == "member":
            self._check_joined(now)
        if now - self._last_hello >= HELLO_INTERVAL_S and self._role == "member":
            self._last_hello = now
            self._send({"t": "hello"}, self._hub_address())

    def _check_joined(self, now: float) -> None:
        """Warn once when no hub has welcomed this member for `JOIN_WARNING_S`.

        The usual cause is another program on the rendezvous port: binding it fails (so this
        process is no hub) and nothing answers the `hello`s, so the radio hears nothing and
        nothing would say why.
        """
        if self._join_warned or now - self._last_welcome < JOIN_WARNING_S:
            return
        self._join_warned = True
        logger.warning(
            "simulated radio channel: no p1-lora hub has answered on %s:%d for %.0f s; another "
            "program probably holds that UDP port. Start both processes with another free port "
            "(--sim-port PORT or %s=PORT); this process keeps trying.",
            self.options.host,
            self.port,
            now - self._last_welcome,
            SIM_PORT_ENV,
        )

    def _welcomed(self, now: float) -> None:
        self._last_welcome = now
        if self._join_warned:
            self._join_warned = False
            logger.info(
                "simulated radio channel: joined the hub on %s:%d after all",
                self.options.host,
                self.port,
            )

    def _try_become_hub(self, now: float) -> None:
        sock = self._bind_hub()
        if sock is None:
            self._last_hub_contact = now - HUB_TIMEOUT_S / 2  # retry soon, not every loop
            return
        with self._net_lock:
            old, self._sock = self._sock, sock
            self._members.clear()
        old.close()
        self._role = "hub"
        self.stats.elections_won += 1
        if self._join_warned:
            self._join_warned = False
            logger.info(
                "simulated radio channel: the UDP port %d is free now; this process is the hub",
                self.port,
            )
        else:
            logger.info(
                "sim UDP: the hub went away; this process is the hub now (port %d)", self.port
            )

    def _handle(self, data: bytes, address: tuple[str, int]) -> None:  # noqa: C901, PLR0911, PLR0912 - the datagram protocol's dispatch by role and kind
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.stats.malformed += 1
            return
        if not isinstance(message, dict) or message.get("m") != MAGIC:
            self.stats.malformed += 1
            return
        kind = message.get("t")
        sender = str(message.get("n", ""))
        if sender == self.node:
            return
        now = self._monotonic()
        if self._role == "hub":
            if kind == "bye":
                with self._net_lock:
                    self._members.pop(address, None)
                return
            with self._net_lock:
                self._members[address] = now
            if kind == "hello":
                self._send({"t": "welcome"}, address)
                return
            if kind == "fault":
                return  # only the hub sends faults; a member's is ignored, never relayed
            if kind == "frame" and self.relay_hook is not None:
                self._hook_frame(sender, message, address)
                return
            if kind in ("frame", "abort"):
                self.stats.relayed += 1
                relay = {k: v for k, v in message.items() if k not in ("m",)}
                self._send_relayed(relay, exclude=address)
        else:
            if kind == "bye":
                self._last_hub_contact = -math.inf  # elect a new hub right away
                return
            self._last_hub_contact = now
            if kind == "welcome":
                self._welcomed(now)
                return
            if kind == "fault":
                if address == self._hub_address():
                    self._apply_fault(message)
                return
        if kind == "frame":
            self._receive_frame(sender, message)
        elif kind == "abort":
            key = message.get("id")
            frame = self._remote.get((sender, key)) if isinstance(key, int) else None
            if frame is not None:
                self.channel.abort(frame)

    def _send_relayed(self, message: dict[str, Any], exclude: tuple[str, int]) -> None:
        """Relay a member's message unchanged (its origin node id kept) to the other members."""
        data = json.dumps({"m": MAGIC, **message}, separators=(",", ":")).encode()
        with self._net_lock:
            members = [addr for addr in self._members if addr != exclude]
            for address in members:
                try:
                    self._sock.sendto(data, address)
                except OSError as exc:
                    logger.debug("sim UDP relay to %s failed: %s", address, exc)

    def _hook_frame(self, sender: str, message: dict[str, Any], address: tuple[str, int]) -> None:
        """Hub with a `relay_hook`: let the hook see, change or drop a member's frame."""
        hook = self.relay_hook
        frame = self._parse_frame(sender, message)
        if frame is None or hook is None:
            return
        try:
            result = hook(frame)
        except Exception:
            logger.exception("sim UDP: the relay hook failed; relaying the frame unchanged")
            result = frame
        if result is None:
            self.stats.hook_dropped += 1
            return
        self.stats.relayed += 1
        self._send_relayed(_frame_message(result), exclude=address)
        self._inject(result)

    def _apply_fault(self, message: dict[str, Any]) -> None:
        """A test fault from the hub: set the knobs on this process's chips if it is `pid`."""
        if message.get("pid") != os.getpid():
            return
        knobs = message.get("faults")
        try:
            if not isinstance(knobs, dict) or not knobs:
                raise ValueError("no fault knobs")
            values = {name: _FAULT_KNOBS[name](value) for name, value in knobs.items()}
        except (KeyError, ValueError) as exc:
            logger.warning("sim UDP: ignored a test fault from the hub: %s", exc)
            return
        names = self.channel.radio_names
        with self.channel.lock.hold():
            for name in names:
                chip = self.channel.chip(name)
                for knob, value in values.items():
                    setattr(chip.faults, knob, value)
        logger.warning(
            "sim UDP: TEST FAULT from the hub applied to emulated chip(s) %s: %s",
            ", ".join(names) or "(none)",
            ", ".join(f"{knob}={value}" for knob, value in values.items()),
        )

    def _parse_frame(self, sender: str, message: dict[str, Any]) -> RelayedFrame | None:
        try:
            sender_loss = message.get("pl")
            payload = bytes.fromhex(str(message.get("payload", "")))
            if len(payload) > 255:
                raise ValueError("payload longer than 255 bytes")
            return RelayedFrame(
                sender=sender,
                frame_id=_int(message.get("id"), -(2**31), 2**31, "id"),
                params=_params_from_json(message.get("params")),
                payload=payload,
                tx_power_dbm=_float(message.get("pwr"), -60.0, 40.0, "power"),
                airtime=_float(message.get("air"), 0.0, 30.0, "airtime"),
                path_loss_db=(
                    None if sender_loss is None else _float(sender_loss, 0.0, 400.0, "path loss")
                ),
                freq_offset_hz=_float(message.get("xo", 0.0), -1e6, 1e6, "frequency offset"),
            )
        except ValueError as exc:
            self.stats.malformed += 1
            logger.debug("sim UDP: dropped a malformed frame from %s: %s", sender, exc)
            return None

    def _receive_frame(self, sender: str, message: dict[str, Any]) -> None:
        frame = self._parse_frame(sender, message)
        if frame is not None:
            self._inject(frame)

    def _inject(self, frame: RelayedFrame) -> None:
        """Start `frame` on this process's channel, as heard through the larger path loss."""
        losses = [value for value in (frame.path_loss_db, self._path_loss_db) if value is not None]
        path_loss = max(losses) if losses else DEFAULT_PATH_LOSS_DB
        self.stats.frames_in += 1
        onair = self.channel.inject(
            f"udp:{frame.sender}",
            frame.params,
            frame.payload,
            tx_power_dbm=frame.tx_power_dbm,
            airtime=frame.airtime,
            path_loss_db=path_loss,
            freq_offset_hz=frame.freq_offset_hz,
        )
        now = self.scheduler.now()
        self._remote = {key: value for key, value in self._remote.items() if value.end > now - 1.0}
        self._remote[(frame.sender, frame.frame_id)] = onair


def _frame_message(frame: RelayedFrame) -> dict[str, Any]:
    """The `frame` message for `frame`, origin node id included."""
    return {
        "t": "frame",
        "n": frame.sender,
        "id": frame.frame_id,
        "params": _params_to_json(frame.params),
        "payload": frame.payload.hex(),
        "pwr": frame.tx_power_dbm,
        "air": frame.airtime,
        "pl": frame.path_loss_db,
        "xo": frame.freq_offset_hz,
    }
