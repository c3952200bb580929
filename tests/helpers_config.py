"""Odd TOML documents for the config loader's property tests: a tiny TOML writer (inline forms
only, which tomllib reads back as the same dicts and lists) and hypothesis strategies that mix
real section and key names with wrong types, extreme numbers, dates and nesting."""

from __future__ import annotations

import datetime
import math
from typing import Any

from hypothesis import strategies as st

from p1lora.receiver.options import RX_OPTIONS
from p1lora.service.config import OptionTable
from p1lora.transmitter.options import TX_OPTIONS


def toml_value(value: Any) -> str:
    """`value` as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(
        f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7F or ch in '"\\' else ch
        for ch in text
    )
    return f'"{escaped}"'


def toml_document(document: dict[str, Any]) -> str:
    """A whole document, every top-level entry as ``key = inline value``."""
    return "".join(f"{_string(key)} = {toml_value(value)}\n" for key, value in document.items())


def _names(table: OptionTable) -> list[str]:
    return sorted({*table.sections, *(o.key for o in table.options)})


_NAMES = sorted({*_names(TX_OPTIONS), *_names(RX_OPTIONS), "bogus", "", " ", "mqtx", "Radio"})

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 65536, 2**63 - 1, -(2**63), 10**300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 5e-324, 868.1, 125.0, 0.0, -0.0]),
    st.text(max_size=12),
    st.sampled_from(["", " ", "~", "~nosuchuser-p1lora/x", "virtual", "sim", "sx127x", "EU868"]),
    st.sampled_from(["auto", "fixed", "dragino", "/dev/null", "/", "relative/path", "0.0.0.0"]),
    st.dates(),
    st.datetimes(),
    st.times(),
)

names = st.sampled_from(_NAMES) | st.text(max_size=6)

values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=4),
    max_leaves=8,
)

#: A section body: mostly real keys, with scalar or nested values.
sections = st.dictionaries(names, values, max_size=6)

#: A top-level document: sections, values at the top level, arrays of tables.
documents = st.dictionaries(
    names,
    st.one_of(sections, values, st.lists(sections, min_size=1, max_size=2)),
    max_size=5,
)
