"""`p1-lora bench channel`: how fast the simulated channel runs a crowded meter room.

N transmitters (the real SX127x driver on emulated chips) each send a 40-byte SF7/BW250 frame
once a second, every one at its own random phase, to N listening receivers on one
`SimChannel`; optionally with the LoRaWAN background traffic of a preset. Path losses are drawn
like a block of flats: 60-70 dB between transmitters in the meter room, 95-125 dB from each
transmitter to its receiver, 90-130 dB across. The table shows the virtual time simulated, the
wall-clock time it took on this machine (one core), and what the channel counted.

This measures the channel, the emulator and the driver, without the link protocol above them;
`p1-lora sim` runs the whole stack. The issue-16 target: an hour of 20 transmitters at 1 Hz
in minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time

from p1lora.common.clock import VirtualClock
from p1lora.common.radio_types import RadioSettings
from p1lora.hardware.background import BACKGROUND_CHOICES, start_background
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.radio import FrameReceived
from p1lora.hardware.sx127x import SX127x

__all__ = ["configure", "run"]

_SETTINGS = RadioSettings(frequency_hz=869_525_000, sf=7, bw_hz=250_000)
_PAYLOAD_BYTES = 40


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("--transmitters", type=int, default=20, help="how many (default 20)")
    parser.add_argument(
        "--duration", type=float, default=3600.0, help="virtual seconds (default 3600)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="frames/s each (default 1)")
    parser.add_argument(
        "--background", choices=BACKGROUND_CHOICES, default="none", help="LoRaWAN background"
    )
    parser.add_argument("--seed", type=int, default=1)


def _radio(channel: SimChannel, clock: VirtualClock, name: str) -> SX127x:
    chip = channel.add_radio(name)
    radio = SX127x(chip.spi, clock=clock, reset=chip.reset_pin, dio0=chip.dio0, name=name)
    radio.configure(_SETTINGS)
    return radio


def _building(count: int, seed: int) -> tuple[VirtualClock, SimChannel, list[SX127x], list[SX127x]]:
    clock = VirtualClock()
    channel = SimChannel(clock, seed=seed)
    draw = random.Random(seed)
    senders = [_radio(channel, clock, f"tx{i}") for i in range(count)]
    receivers = [_radio(channel, clock, f"rx{i}") for i in range(count)]
    for i in range(count):
        for j in range(count):
            if i < j:
                channel.set_path_loss(f"tx{i}", f"tx{j}", draw.uniform(60, 70))
                channel.set_path_loss(f"rx{i}", f"rx{j}", draw.uniform(90, 130))
            channel.set_path_loss(
                f"tx{i}", f"rx{j}", draw.uniform(95, 125) if i == j else draw.uniform(90, 130)
            )
    return clock, channel, senders, receivers


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.transmitters <= 200 or not 0 < args.duration <= 7 * 86400:
        print("p1-lora bench channel: 1..200 transmitters, 0..604800 s", file=sys.stderr)
        return 2
    if not 0 < args.rate <= 10:
        print("p1-lora bench channel: the rate must be within 0..10 frames/s", file=sys.stderr)
        return 2
    clock, channel, senders, receivers = _building(args.transmitters, args.seed)
    start_background(channel, args.background, seed=args.seed)
    draw = random.Random(args.seed + 1)
    period = 1.0 / args.rate
    payload = bytes(_PAYLOAD_BYTES)

    def every_period(sender: SX127x) -> None:
        sender.poll()
        sender.send(payload)
        clock.call_later(period, lambda: every_period(sender))

    for sender in senders:
        clock.call_later(draw.uniform(0, period), functools.partial(every_period, sender))
    received = 0
    began = time.perf_counter()
    cpu_began = time.process_time()
    elapsed = 0.0
    while elapsed < args.duration:
        step = min(10.0, args.duration - elapsed)
        clock.advance(step)
        elapsed += step
        for receiver in receivers:
            received += sum(isinstance(event, FrameReceived) for event in receiver.poll())
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    stats = channel.stats
    rows = [
        ("transmitters x rate", f"{args.transmitters} x {args.rate:g}/s"),
        ("background", args.background),
        ("virtual time", f"{args.duration:g} s"),
        ("frames on the air", f"{stats.frames_sent}"),
        ("  of which background", f"{stats.background_frames}"),
        ("frames received (any receiver)", f"{received}"),
        ("co-SF / inter-SF lost", f"{stats.co_sf_lost} / {stats.inter_sf_lost}"),
        ("busy lost (foreign)", f"{stats.busy_lost} ({stats.foreign_busy_lost})"),
        ("receiver busy s (foreign)", f"{stats.busy_s:.0f} ({stats.foreign_busy_s:.0f})"),
        ("wall-clock time", f"{wall:.1f} s"),
        ("CPU time (one core)", f"{cpu:.1f} s"),
        ("virtual / wall", f"{args.duration / wall:.0f}x"),
    ]
    width = max(len(label) for label, _ in rows)
    print("Simulated channel, measured with time.perf_counter on this machine (one process)")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p1-lora bench channel")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
