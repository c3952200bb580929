"""`p1-lora bench building`: many links in one meter room, the new air policy beside the old.

For each background, meter phase and number of links, runs the building simulator
(`tools.sim_building`) twice on the same drawn building, the same meters and the same seeds:
once with the links as they are (`AirPolicy()`: a slot per link while crowded, listen before
talk, fast rendezvous, collisions told from weak links) and once as they were before
(`AirPolicy.legacy()`, `--legacy-air` in `p1-lora sim`). One table, side by side, with how it
was measured in its header. Targets (issue 16) are printed under the table with the figures
that meet or miss them.

The runs are independent: `--jobs 2` runs two at a time (at most two: the machine it is meant
for has two cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TextIO

from p1lora.tools.sim import SimOptions
from p1lora.tools.sim_building import PHASES, Building, BuildingOptions

__all__ = ["Case", "configure", "render", "results", "run", "run_case"]

FULL_LINKS: Final = (1, 2, 5, 10, 20)
QUICK_LINKS: Final = (1, 2, 5)
QUICK_DURATION_S: Final = 600.0
#: Backgrounds of the full table (those the channel offers): an empty air and a city's.
DEFAULT_BACKGROUNDS: Final = ("none", "city")
#: The policies compared, in table order.
POLICIES: Final = ("new", "legacy")


def _backgrounds() -> tuple[str, ...]:
    """The backgrounds the channel offers (`SimOptions.background`, when it has one)."""
    try:
        module = importlib.import_module("p1lora.hardware.background")
    except ImportError:
        return ("none",)
    return tuple(getattr(module, "BACKGROUND_CHOICES", ("none",)))


@dataclass(frozen=True, slots=True)
class Case:
    """One run of the table."""

    links: int
    phase: str
    background: str
    policy: str
    duration_s: float
    seed: int

    def options(self) -> BuildingOptions:
        base = SimOptions(duration_s=self.duration_s, seed=self.seed)
        if self.background != "none":  # only offered when the channel has backgrounds
            extra: dict[str, Any] = {"background": self.background}
            base = dataclasses.replace(base, **extra)
        return BuildingOptions(
            links=self.links, phase=self.phase, base=base, legacy_air=self.policy == "legacy"
        )


def run_case(case: Case) -> dict[str, object]:
    """Run one case; the summary and the shared air's figures. The links' warnings are
    silenced for the run and the logging level put back after it, so running in-process (one
    job, `p1-lora bench report`) leaves the caller's logging as it was."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        result = Building(case.options()).run()
    finally:
        root.setLevel(level)
    channel, summary = result["channel"], result["summary"]
    assert isinstance(channel, dict) and isinstance(summary, dict)
    return {
        "links": case.links,
        "phase": case.phase,
        "background": case.background,
        "policy": case.policy,
        "duration_s": result["duration_s"],
        "seed": case.seed,
        "wall_time_s": result["wall_time_s"],
        "duty_cycle_limit": result["duty_cycle_limit"],
        "occupancy": channel.get("p1lora_occupancy"),
        **summary,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--links",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=None,
        metavar="N,N,...",
        help=f"numbers of links (default {','.join(map(str, FULL_LINKS))})",
    )
    parser.add_argument(
        "--phase", choices=PHASES, action="append", help="meter phase (default both)"
    )
    parser.add_argument(
        "--background",
        action="append",
        help=f"background traffic, repeatable (one of {', '.join(_backgrounds())}; default "
        "none and city, where the channel offers it)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="S", help="seconds per run (default 3600)"
    )
    parser.add_argument("--seed", type=int, default=1, help="building seed (default 1)")
    parser.add_argument(
        "--jobs", type=int, choices=(1, 2), default=1, help="runs at a time (default 1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke test: {int(QUICK_DURATION_S)} s runs of {QUICK_LINKS} links, no background",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def cases(args: argparse.Namespace) -> list[Case]:
    links = args.links or (QUICK_LINKS if args.quick else FULL_LINKS)
    duration = args.duration or (QUICK_DURATION_S if args.quick else 3600.0)
    phases = args.phase or list(PHASES)
    default = [b for b in DEFAULT_BACKGROUNDS if b in _backgrounds()]
    backgrounds = args.background or (["none"] if args.quick else default)
    unknown = set(backgrounds) - set(_backgrounds())
    if unknown:
        raise ValueError(f"background must be one of {', '.join(_backgrounds())}")
    if any(not 1 <= n <= 64 for n in links):
        raise ValueError("links must be within 1..64")
    if not 60 <= duration <= 86_400:
        raise ValueError("duration must be within 60..86400 s")
    return [
        Case(n, phase, background, policy, duration, args.seed)
        for background in backgrounds
        for phase in phases
        for n in links
        for policy in POLICIES
    ]


def run(args: argparse.Namespace) -> int:
    try:
        todo = cases(args)
    except ValueError as exc:
        print(f"p1-lora bench building: {exc}", file=sys.stderr)
        return 2
    if args.json:
        rows = list(results(todo, args.jobs))
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = []
    for row in results(todo, args.jobs):  # each row as soon as it and those before are done
        if not rows:
            render_header(row, sys.stdout)
        rows.append(row)
        sys.stdout.write(render_row(rows, row))
        sys.stdout.flush()
    return 0


def results(todo: Sequence[Case], jobs: int) -> Iterator[dict[str, object]]:
    """The rows of `todo` in order, `jobs` runs at a time (worker processes for 2)."""
    if jobs <= 1:
        yield from (run_case(case) for case in todo)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(run_case, todo)


def _num(value: object, digits: int = 0) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: object) -> str:
    return f"{value * 100:.1f} %" if isinstance(value, int | float) else "-"


def _solo(rows: Sequence[dict[str, object]], row: dict[str, object]) -> float | None:
    """The one-link figure of the same policy, phase and background (the "solo" delivery)."""
    for other in rows:
        if other["links"] == 1 and all(
            other[k] == row[k] for k in ("policy", "phase", "background")
        ):
            value = other.get("delivered_per_hour_min")
            return float(value) if isinstance(value, int | float) and value > 0 else None
    return None


def render(rows: Sequence[dict[str, object]], out: TextIO) -> None:
    """The side-by-side table (markdown)."""
    if not rows:
        return
    render_header(rows[0], out)
    for row in rows:
        out.write(render_row(rows, row))


_COLUMNS = (
    "background",
    "phase",
    "links",
    "air",
    "delivered/h min",
    "median",
    "ratio min",
    "median",
    "% of solo (worst)",
    "max duty / node",
    "link losses",
    "lost for good",
    "occupancy",
    "first delivery max s",
    "wall s",
)


def render_header(first: dict[str, object], out: TextIO) -> None:
    out.write(
        f"p1-lora bench building: {first['duration_s']} s of simulated time per run, building "
        f"seed {first.get('seed', '-')} (drawn geometry: transmitters 60-70 dB apart, each "
        "receiver 95-125 dB from its transmitter), DSMR 5 virtual meters; 'new' is the link as "
        "it is, 'legacy' the same code with AirPolicy.legacy() (before 'Sharing the air'), "
        "both on the same building, meters and seeds. '% of solo' is the worst link's "
        "delivery over the one-link run of the same policy, phase and background. Occupancy: "
        "share of the run some p1-lora frame was on the channel.\n\n"
    )
    out.write("| " + " | ".join(_COLUMNS) + " |\n")
    out.write("|" + "---|" * len(_COLUMNS) + "\n")


def render_row(rows: Sequence[dict[str, object]], row: dict[str, object]) -> str:
    """One table line; `rows` (those done so far) holds the one-link run it is compared to."""
    solo = _solo(rows, row)
    worst = row.get("delivered_per_hour_min")
    share = f"{float(worst) / solo * 100:.0f} %" if solo and isinstance(worst, int | float) else "-"
    cells = [
        str(row["background"]),
        str(row["phase"]),
        str(row["links"]),
        str(row["policy"]),
        _num(row["delivered_per_hour_min"]),
        _num(row["delivered_per_hour_median"]),
        _pct(row["delivery_ratio_min"]),
        _pct(row["delivery_ratio_median"]),
        share,
        f"{_pct(row['duty_cycle_max'])} (limit {_pct(row['duty_cycle_limit'])})",
        _num(row["link_losses"]),
        _num(row["lost_for_good"]),
        _pct(row["occupancy"]),
        _num(row["first_delivery_max_s"], 1),
        _num(row["wall_time_s"], 1),
    ]
    return "| " + " | ".join(cells) + " |\n"
