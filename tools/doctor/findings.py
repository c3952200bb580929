"""What a doctor check reports, and how the report is printed (text for people, JSON for
scripts).

A finding names its check (`check`, stable: scripts and docs/troubleshooting.md key on it),
says what it saw, and on failure the one thing to do. `section` is the heading in
docs/troubleshooting.md that explains the finding at length.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "TROUBLESHOOTING",
    "Finding",
    "Status",
    "failed",
    "passed",
    "render_json",
    "render_text",
    "skipped",
    "warned",
]

TROUBLESHOOTING: Final = "docs/troubleshooting.md"


class Status(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    #: Works, but worse than it could (a missing optional pin): does not change the exit code.
    WARN = "warn"
    #: Not run because an earlier check failed or it does not apply here.
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result."""

    check: str
    status: Status
    saw: str
    fix: str | None = None
    section: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is Status.FAIL

    def as_dict(self) -> dict[str, str | None]:
        return {
            "check": self.check,
            "status": str(self.status),
            "saw": self.saw,
            "fix": self.fix,
            "see": f"{TROUBLESHOOTING}#{self.section}" if self.section else None,
        }


def passed(check: str, saw: str) -> Finding:
    return Finding(check, Status.OK, saw)


def failed(check: str, saw: str, fix: str, section: str) -> Finding:
    return Finding(check, Status.FAIL, saw, fix, section)


def warned(check: str, saw: str, fix: str, section: str) -> Finding:
    return Finding(check, Status.WARN, saw, fix, section)


def skipped(check: str, why: str) -> Finding:
    return Finding(check, Status.SKIP, why)


_LABELS: Final = {
    Status.OK: "ok  ",
    Status.FAIL: "FAIL",
    Status.WARN: "warn",
    Status.SKIP: "skip",
}


def render_text(findings: Iterable[Finding]) -> str:
    """One line per check; failures and warnings add what to do and where to read more."""
    lines: list[str] = []
    items = list(findings)
    width = max((len(f.check) for f in items), default=0)
    for finding in items:
        lines.append(f"{_LABELS[finding.status]}  {finding.check:<{width}}  {finding.saw}")
        pad = " " * (width + 8)
        if finding.fix:
            lines.append(f"{pad}do:  {finding.fix}")
        if finding.section:
            lines.append(f"{pad}see: {TROUBLESHOOTING}#{finding.section}")
    failures = sum(f.failed for f in items)
    lines.append(
        "all checks passed" if not failures else f"{failures} check(s) failed: fix the first one"
    )
    return "\n".join(lines) + "\n"


def render_json(findings: Iterable[Finding], exit_code: int) -> str:
    items = list(findings)
    return json.dumps(
        {
            "ok": exit_code == 0,
            "exit_code": exit_code,
            "failed": [f.check for f in items if f.failed],
            "checks": [f.as_dict() for f in items],
        },
        indent=2,
    )
