"""What a two-phase switch costs in airtime, before it starts (pure: no state, no clock).

A switch is a SWITCH at the current setting, probes at the target and a proof (the first
non-probe frame) at the target. The receiver waits at the target only `timing.switch_timeout`,
so the whole sequence must fit one budget window of *both* sides: the transmitter's frames in
its budget, the receiver's acks in its own. `TxLink` asks this module whether a rung can be
reached at all (the tuner skips rungs that never can), how large the probes may be, and which
plan can start soonest.
"""

from __future__ import annotations

from dataclasses import dataclass

from p1lora.common.airtime import time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.frames import FrameType, overhead
from p1lora.common.link import timing
from p1lora.common.link.config import LinkConfig
from p1lora.common.radio_types import RadioSettings

__all__ = ["SwitchPlanner", "same_rung"]


def same_rung(a: RadioSettings, b: RadioSettings) -> bool:
    """Same spreading factor and bandwidth (the power may differ)."""
    return a.sf == b.sf and a.bw_hz == b.bw_hz


@dataclass(frozen=True, slots=True)
class SwitchPlanner:
    """Switch plans for one link: its config, its own budget and its copy of the receiver's.
    Only the budgets' fixed limits are read (`sequence_fits`), never what was sent."""

    config: LinkConfig
    budget: AirtimeBudget
    peer_budget: AirtimeBudget

    def probe_size(
        self, origin: RadioSettings, target: RadioSettings, typical_bytes: float, proof_bytes: int
    ) -> int:
        """Probes are padded like a typical update (up to `timing.PROBE_MAX_BYTES`), so a
        commit says updates get through. Where the budget window is short (US915), the padding
        shrinks until the smallest plan (the SWITCH at `origin`, `probe_count` probes and
        the proof at `target`) fits the allowance and each probe the dwell limit: a smaller
        probe that fits proves more than a full-size one that never goes."""
        low = overhead(FrameType.PROBE) + 1
        size = max(low, min(timing.PROBE_MAX_BYTES, round(typical_bytes)))
        budget = self.budget
        if budget.unlimited and budget.max_frame_s is None:
            return size
        switch = time_on_air_for(origin, timing.SWITCH_BYTES)
        proof = time_on_air_for(target, proof_bytes)
        count = self.config.probe_count
        while size > low:
            probe = time_on_air_for(target, size)
            if budget.sequence_fits([switch, proof] + [probe] * count):
                break
            size -= 1
        return size

    def plans(
        self, origin: RadioSettings, target: RadioSettings, typical_bytes: float, proof_bytes: int
    ) -> tuple[list[float], ...]:
        """The airtime of each frame a switch from `origin` to `target` may take, most
        generous plan first: every SWITCH repeat and every probe attempt; one SWITCH and
        every probe; one SWITCH and just the probes that commit. Every plan ends with the
        proof (`proof_bytes`): the receiver commits only when a non-probe frame arrives at
        the target, and reverts `timing.switch_timeout` after the last probe without one.

        A plan must fit one budget window so neither the probes nor the proof are held up by
        the budget while the receiver waits at the target. Where the window is short (US915:
        0.4 s in 20 s) only the smallest plan fits (its probes shrink to make room, see
        `probe_size`); a SWITCH repeat then waits for the budget like any frame."""
        switch = time_on_air_for(origin, timing.SWITCH_BYTES)
        probe_bytes = self.probe_size(origin, target, typical_bytes, proof_bytes)
        probe = time_on_air_for(target, probe_bytes)
        proof = time_on_air_for(target, proof_bytes)
        config = self.config
        return (
            [switch] * config.switch_attempts + [probe] * config.probe_attempts + [proof],
            [switch] + [probe] * config.probe_attempts + [proof],
            [switch] + [probe] * config.probe_count + [proof],
        )

    def acks(self, origin: RadioSettings, target: RadioSettings) -> list[float]:
        """The receiver's share of the smallest plan: the SWITCH's ack at `origin`, the acks
        of the committing probes and of the proof at the target."""
        ack = timing.ACK_TYPICAL_BYTES
        at_target = [time_on_air_for(target, ack)] * (self.config.probe_count + 1)
        return [time_on_air_for(origin, ack), *at_target]

    def reachable(
        self, origin: RadioSettings, target: RadioSettings, typical_bytes: float, proof_bytes: int
    ) -> bool:
        """Whether the smallest plan fits one window of both budgets."""
        smallest = self.plans(origin, target, typical_bytes, proof_bytes)[-1]
        return self.budget.sequence_fits(smallest) and self.peer_budget.sequence_fits(
            self.acks(origin, target)
        )

    def unlimited(self) -> bool:
        """No allowance and no dwell cap: every plan fits."""
        return self.budget.unlimited and self.budget.max_frame_s is None
