"""A small sans-I/O harness for the link state machines: two links, one VirtualClock, a channel.

This is for unit tests of `TxLink`/`RxLink` (the emulator-based simulator comes later). The
channel model is pure Python and deliberately simple but physical:

- RSSI = TX power - path loss (+ per-frame Gaussian fading);
- noise floor = -174 dBm/Hz + 10*log10(BW) + 6 dB noise figure, so SNR drops 3 dB per BW
  doubling;
- a frame survives with probability logistic((SNR - floor(SF)) / transition), the floor being
  the SX127x demodulation floor per SF (so reception fades out over about 2 dB around it);
- the reported SNR saturates at +10 dB as a real SX127x's does (RSSI keeps tracking);
- extra configurable random loss per direction, and hard blocking per direction by time;
- the receiver must be on the same channel (frequency, SF, BW, sync word) for the whole frame
  and not transmitting itself (half duplex).

The harness executes link actions the way a runtime must (in order; Transmit immediately;
`tx_done` after the airtime; frames reported with RSSI/SNR and the settings heard on), keeps
every transmission for budget checks, persists counters/state like a runtime would, and can
restart either side. `inject()` is the attacker: it delivers arbitrary bytes to a side.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from p1lora.common.budget import AirtimeBudget
from p1lora.common.clock import VirtualClock
from p1lora.common.counters import CounterState
from p1lora.common.crypto import Direction, FrameCipher
from p1lora.common.frames import FrameType
from p1lora.common.link import (
    Action,
    CommandReply,
    Configure,
    Deliver,
    LinkConfig,
    LinkEventAction,
    PersistCounters,
    PersistState,
    RunCommand,
    RxLink,
    RxPersistentState,
    StatusReport,
    Transmit,
    TxLink,
    TxPersistentState,
)
from p1lora.common.link.messages import Discover
from p1lora.common.link.session import LinkSecurity
from p1lora.common.link.tuning import DEMODULATION_FLOOR_DB
from p1lora.common.radio_types import RadioSettings, ReceivedFrame

NOISE_FIGURE_DB = 6.0
PSK = bytes(range(32))


def noise_floor_dbm(bw_hz: int) -> float:
    return -174.0 + 10 * math.log10(bw_hz) + NOISE_FIGURE_DB


def snr_for(path_loss_db: float, settings: RadioSettings, tx_power_dbm: int) -> float:
    """Mean SNR of a frame sent with `tx_power_dbm` over `path_loss_db` at `settings`' BW."""
    return tx_power_dbm - path_loss_db - noise_floor_dbm(settings.bw_hz)


def path_loss_for_snr(snr_db: float, bw_hz: int = 125_000, tx_power_dbm: int = 14) -> float:
    """The path loss that gives `snr_db` at `bw_hz` with `tx_power_dbm`."""
    return tx_power_dbm - noise_floor_dbm(bw_hz) - snr_db


@dataclass
class Channel:
    """The radio channel between the two links (see the module docstring)."""

    path_loss_db: float | Callable[[float], float] = 100.0
    fading_db: float = 1.0
    transition_db: float = 0.5
    report_noise_db: float = 0.5
    #: Real SX127x chips report no packet SNR above about +10 dB (None: no saturation).
    snr_saturation_db: float | None = 10.0
    uplink_loss: float = 0.0
    downlink_loss: float = 0.0
    uplink_blocked: Callable[[float], bool] = lambda _t: False
    downlink_blocked: Callable[[float], bool] = lambda _t: False
    #: Listen before talk finds the channel busy throughout a transmitter frame's hold: the
    #: frame never goes on air (its runtime reports it done, with no airtime, 0.75 s later).
    tx_unaired: Callable[[float], bool] = lambda _t: False

    def loss_at(self, t: float) -> float:
        value = self.path_loss_db
        return value(t) if callable(value) else value


@dataclass
class Air:
    """One transmission on the air."""

    sender: str
    start: float
    airtime: float
    payload: bytes
    settings: RadioSettings
    frame_type: str
    heard: bool = False  # the other side received it (channel and radio permitting)

    @property
    def end(self) -> float:
        return self.start + self.airtime


@dataclass
class Node:
    name: str
    link: TxLink | RxLink
    settings: RadioSettings | None = None
    generation: int = 0
    counter_state: CounterState | None = None
    link_state: TxPersistentState | RxPersistentState | None = None
    transmitting_until: float = -1.0
    sent: list[Air] = field(default_factory=list)
    delivered: list[tuple[float, bytes]] = field(default_factory=list)
    events: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)
    replies: list[CommandReply] = field(default_factory=list)
    statuses: list[StatusReport] = field(default_factory=list)
    runs: list[RunCommand] = field(default_factory=list)
    settings_log: list[tuple[float, RadioSettings]] = field(default_factory=list)
    persist_order_ok: bool = True
    #: Frames listen before talk never put on air (`Channel.tx_unaired`).
    unaired: int = 0

    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.events]


class Harness:
    """Two links, a clock, a channel, a meter. Drive it with `run_until` / `run_for`."""

    def __init__(
        self,
        *,
        channel: Channel | None = None,
        tx_config: LinkConfig | None = None,
        rx_config: LinkConfig | None = None,
        seed: int = 1,
        telegram_interval: float | None = 1.0,
        telegrams: Callable[[], bytes] | None = None,
        psk: bytes = PSK,
        rx_psk: bytes | None = None,
    ) -> None:
        self.clock = VirtualClock(0.0)
        self.channel = channel or Channel()
        self.tx_config = tx_config or LinkConfig()
        self.rx_config = rx_config or LinkConfig()
        self.random = random.Random(seed)
        self.psk = psk
        self.rx_psk = rx_psk or psk
        self.air: list[Air] = []
        self.read: list[tuple[float, bytes]] = []
        self._telegrams = telegrams or _meter_stream(seed)
        self.tx = Node("tx", self._new_tx(None, None))
        self.rx = Node("rx", self._new_rx(None, None))
        self._process(self.tx, self.tx.link.actions())
        self._process(self.rx, self.rx.link.actions())
        self.telegram_interval = telegram_interval
        if telegram_interval is not None:
            self.clock.call_at(0.5, self._next_telegram)

    # -- construction ------------------------------------------------------------------------

    def link_rng(self, n: int) -> bytes:
        return self.random.randbytes(n)

    def _new_tx(self, counter: CounterState | None, state: object) -> TxLink:
        persisted = state if isinstance(state, TxPersistentState) else None
        return TxLink(
            self.tx_config, self.psk, counter, self.link_rng, self.clock.now(), persisted=persisted
        )

    def _new_rx(self, counter: CounterState | None, state: object) -> RxLink:
        persisted = state if isinstance(state, RxPersistentState) else None
        return RxLink(
            self.rx_config,
            self.rx_psk,
            counter,
            self.link_rng,
            self.clock.now(),
            persisted=persisted,
        )

    def restart_tx(self, *, keep_state: bool = True) -> None:
        """Reboot the transmitter: a new TxLink from what its runtime persisted."""
        node = self.tx
        node.generation += 1
        node.transmitting_until = -1.0
        counter = node.counter_state if keep_state else None
        state = node.link_state if keep_state else None
        node.link = self._new_tx(counter, state)
        self._process(node, node.link.actions())

    def restart_rx(self, *, keep_state: bool = False) -> None:
        """Reboot the receiver; by default its state is lost (back to the rendezvous)."""
        node = self.rx
        node.generation += 1
        node.transmitting_until = -1.0
        counter = node.counter_state if keep_state else None
        state = node.link_state if keep_state else None
        node.link = self._new_rx(counter, state)
        self._process(node, node.link.actions())

    # -- telegrams ---------------------------------------------------------------------------

    def _next_telegram(self) -> None:
        now = self.clock.now()
        raw = self._telegrams()
        self.read.append((now, raw))
        link = self.tx.link
        assert isinstance(link, TxLink)
        self._process(self.tx, link.telegram_ready(now, raw))
        if self.telegram_interval is not None:
            self.clock.call_at(now + self.telegram_interval, self._next_telegram)

    # -- actions -----------------------------------------------------------------------------

    def _other(self, node: Node) -> Node:
        return self.rx if node is self.tx else self.tx

    def _process(self, node: Node, actions: list[Action]) -> None:
        now = self.clock.now()
        persisted_reservation = node.counter_state.reserved_until if node.counter_state else 0
        for action in actions:
            if isinstance(action, Configure):
                node.settings = action.settings
                node.settings_log.append((now, action.settings))
            elif isinstance(action, PersistCounters):
                node.counter_state = action.state
                persisted_reservation = action.state.reserved_until
            elif isinstance(action, Transmit):
                # The counter of this frame must be below a reservation persisted before it.
                used = node.link._security.counter.next_value - 1
                if used >= persisted_reservation:
                    node.persist_order_ok = False
                self._transmit(node, action)
            elif isinstance(action, Deliver):
                node.delivered.append((action.received_at, action.telegram))
            elif isinstance(action, PersistState):
                node.link_state = action.state
            elif isinstance(action, LinkEventAction):
                node.events.append((now, action.kind, dict(action.fields)))
            elif isinstance(action, CommandReply):
                node.replies.append(action)
            elif isinstance(action, StatusReport):
                node.statuses.append(action)
            elif isinstance(action, RunCommand):
                node.runs.append(action)

    def _transmit(self, node: Node, action: Transmit) -> None:
        now = self.clock.now()
        assert now >= node.transmitting_until - 1e-9, f"{node.name} sent while transmitting"
        assert node.settings is not None and action.settings == node.settings, "unconfigured"
        if node is self.tx and self.channel.tx_unaired(now):
            node.unaired += 1
            generation = node.generation

            def given_up() -> None:
                if node.generation == generation:
                    self._process(node, node.link.tx_done(self.clock.now(), None))

            self.clock.call_at(now + 0.75, given_up)
            return
        air = Air(
            node.name, now, action.airtime_s, action.payload, action.settings, action.frame_type
        )
        node.transmitting_until = air.end
        node.sent.append(air)
        self.air.append(air)
        generation = node.generation
        receiver = self._other(node)
        listening = receiver.settings

        def done() -> None:
            if node.generation == generation:
                self._process(node, node.link.tx_done(self.clock.now(), air.airtime))
            self._arrive(receiver, air, listening)

        self.clock.call_at(air.end, done)

    def _arrive(self, node: Node, air: Air, listening_at_start: RadioSettings | None) -> None:
        now = self.clock.now()
        settings = node.settings
        if settings is None or listening_at_start is None:
            return
        if not (
            settings.same_channel(air.settings) and listening_at_start.same_channel(air.settings)
        ):
            return
        if any(a.start < air.end and a.end > air.start for a in node.sent[-4:]):
            return  # half duplex: it was transmitting during the frame
        uplink = air.sender == "tx"
        ch = self.channel
        if (ch.uplink_blocked if uplink else ch.downlink_blocked)(air.start):
            return
        if self.random.random() < (ch.uplink_loss if uplink else ch.downlink_loss):
            return
        loss = ch.loss_at(air.start)
        fading = self.random.gauss(0.0, ch.fading_db) if ch.fading_db else 0.0
        snr = snr_for(loss, air.settings, air.settings.tx_power_dbm) + fading
        floor = DEMODULATION_FLOOR_DB[air.settings.sf]
        p_ok = 1.0 / (1.0 + math.exp(-(snr - floor) / ch.transition_db))
        if self.random.random() >= p_ok:
            return
        reported_snr = round((snr + self.random.gauss(0.0, ch.report_noise_db)) * 4) / 4
        if ch.snr_saturation_db is not None:
            reported_snr = min(reported_snr, ch.snr_saturation_db)
        rssi = air.settings.tx_power_dbm - loss + fading
        frame = ReceivedFrame(air.payload, rssi, reported_snr, settings, now)
        air.heard = True
        self._process(node, node.link.frame_received(frame))

    # -- the attacker -----------------------------------------------------------------------

    def inject(self, to: str, payload: bytes, *, rssi: float = -70.0, snr: float = 9.0) -> None:
        """Deliver arbitrary bytes to a side now, as if heard on its current settings."""
        node = self.tx if to == "tx" else self.rx
        assert node.settings is not None
        frame = ReceivedFrame(payload, rssi, snr, node.settings, self.clock.now())
        self._process(node, node.link.frame_received(frame))

    # -- running -----------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        spins = 0
        last = -1.0
        while True:
            times = [self.clock.next_event_time()]
            times += [self.tx.link.next_deadline(), self.rx.link.next_deadline()]
            valid = [max(t, self.clock.now()) for t in times if t is not None]
            t = min(valid) if valid else end
            if t > end:
                break
            spins = spins + 1 if t == last else 0
            if spins > 10_000:
                raise RuntimeError(f"livelock at t={t}")
            last = t
            self.clock.advance_to(t)
            for node in (self.tx, self.rx):
                deadline = node.link.next_deadline()
                if deadline is not None and deadline <= t:
                    self._process(node, node.link.tick(t))
        self.clock.advance_to(end)
        # An exception inside a link is caught and logged there; in tests it is a failure.
        assert self.tx.link.internal_errors == 0, "TxLink hit an internal error (see log)"
        assert self.rx.link.internal_errors == 0, "RxLink hit an internal error (see log)"

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)

    def run_until_state(
        self, state_tx: str, limit: float, settings: tuple[int, int] | None = None
    ) -> float:
        """Run in 1 s steps until the tx is in `state_tx` (at SF/BW `settings`); return the time."""
        while self.clock.now() < limit:
            self.run_for(1.0)
            link = self.tx.link
            if link.state == state_tx and (
                settings is None or (link.settings.sf, link.settings.bw_hz) == settings
            ):
                return self.clock.now()
        raise AssertionError(
            f"tx did not reach {state_tx} {settings} by {limit} s: {self.tx.link.state} "
            f"{self.tx.link.settings.label()}"
        )

    # -- checks ------------------------------------------------------------------------------

    @property
    def tx_link(self) -> TxLink:
        assert isinstance(self.tx.link, TxLink)
        return self.tx.link

    @property
    def rx_link(self) -> RxLink:
        assert isinstance(self.rx.link, RxLink)
        return self.rx.link

    def delivered_ok(self) -> bool:
        """Every delivered telegram is one the meter produced (byte for byte)."""
        produced = {raw for _, raw in self.read}
        return all(raw in produced for _, raw in self.rx.delivered)


def max_window_airtime(sent: list[Air], window: float = 3600.0) -> float:
    """Largest airtime counted in any window of `window` seconds (frames partly inside count
    in full, as the budget does). Checked at every frame end, where the sum can peak."""
    frames = sorted(sent, key=lambda a: a.start)
    best = 0.0
    for i, frame in enumerate(frames):
        horizon = frame.end - window
        total = sum(a.airtime for a in frames[: i + 1] if a.end > horizon)
        best = max(best, total)
    return best


def max_window_airtime_fast(sent: list[Air], window: float = 3600.0) -> float:
    """Same as `max_window_airtime` in O(n) for long runs (frames end in start order here)."""
    frames = sorted(sent, key=lambda a: a.start)
    best = total = 0.0
    left = 0
    for frame in frames:
        total += frame.airtime
        horizon = frame.end - window
        while frames[left].end <= horizon:
            total -= frames[left].airtime
            left += 1
        best = max(best, total)
    return best


def budget_allowance(config: LinkConfig) -> float:
    return AirtimeBudget.for_sub_band(config.sub_band()).allowance_s


def record_nonces(monkeypatch: object) -> list[tuple[bytes, bytes]]:
    """Record (key, nonce) of every encryption (monkeypatches FrameCipher.seal)."""
    used: list[tuple[bytes, bytes]] = []
    original = FrameCipher.seal

    def seal(self: FrameCipher, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        used.append((self._key, nonce))
        return original(self, nonce, plaintext, associated)

    monkeypatch.setattr(FrameCipher, "seal", seal)  # type: ignore[attr-defined]
    return used


def recorded_discovers(
    count: int,
    *,
    first_counter: int = 0,
    psk: bytes = PSK,
    seed: int = 7,
    binding: bytes = b"",
) -> list[bytes]:
    """`count` genuine DISCOVERs of a transmitter holding `psk` (rising counters from
    `first_counter`, each with its own random, bound to `binding`: the receiver random of
    the transmitter's last session): what an attacker records while a transmitter searches
    for a receiver that is down, to replay them later."""
    rng = random.Random(seed)
    security = LinkSecurity(psk, Direction.UPLINK, CounterState(first_counter), 1, rng.randbytes)
    body = Discover(False, 14).encode()
    return [
        security.seal_static(
            FrameType.DISCOVER, body, security.random(), extra_associated=binding
        ).frame
        for _ in range(count)
    ]


def _meter_stream(seed: int) -> Callable[[], bytes]:
    """Realistic DSMR 5 telegrams, one per call (the virtual meter when available)."""
    try:
        from p1lora.transmitter.virtual_meter import VirtualMeter
    except ImportError:  # pragma: no cover - the meter is another engineer's module
        return _fixture_stream()
    meter = VirtualMeter("dsmr5", seed=seed)
    return lambda: meter.next_telegram()[1]


def _fixture_stream() -> Callable[[], bytes]:
    from tests.conftest import telegram_bytes

    base = telegram_bytes("V5.txt")
    counter = iter(range(10**9))
    return lambda: base.replace(b"(0", b"(" + str(next(counter) % 10).encode(), 1)
