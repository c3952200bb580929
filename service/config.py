"""Daemon configuration: ONE declarative table of options, and the loader that fills it.

Every setting of `p1-lora-tx` and `p1-lora-rx` is one `Option` row: section, key, value kind,
default, validator and help text. Everything else is derived from that row, so the four ways of
setting a value can never disagree about names or rules:

- the TOML file key ``[mqtt] port``,
- the command-line flag ``--mqtt-port`` (a few rows choose a shorter flag, such as ``--radio``),
- the environment variable ``P1LORA_MQTT_PORT`` (``P1LORA_`` + the flag's name),
- the ``--help`` text, the example configs in ``deploy/config`` and ``p1-lora config check``.

Precedence is **flags > environment > file > defaults**, per option. Options that exclude each
other (a board name or custom pins; a serial port or a built-in meter) form an `Exclusive`
group: the alternative set at the highest precedence wins and the others are dropped, so
``--meter virtual`` on the command line overrides a ``[serial] port`` in the default config
file; two alternatives set at the same level are a conflict.

Why so strict: the closet Pi is hard to reach and most users never read the code. A typo in a
config file must not be silently ignored (``[mqtt] prot = 1884`` would leave the port at its
default and the user wondering), so unknown sections and keys are errors that name the key and
suggest the nearest known one; every value is checked on start, and every message names the key
and the problem (``mqtt.port: 70000 is not a port number (1-65535)``). All problems are
collected and reported together, so fixing a file takes one round, not one per mistake. The
daemons exit with code 2 on any of them.

Secrets (`Option.secret`) are never shown: not in error messages, not in the effective
configuration `p1-lora config check` prints, and they have no command-line flag (the process
list is world-readable); they come from the file or the environment.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import errno
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Required, TypedDict

from p1lora.service.bounded_read import UnsuitableFileError, read_regular_file

__all__ = [
    "BOOLEAN",
    "ENV_PREFIX",
    "INTEGER",
    "NUMBER",
    "PATH",
    "STRING",
    "Config",
    "ConfigError",
    "Exclusive",
    "Kind",
    "Option",
    "OptionDetails",
    "OptionTable",
    "Source",
    "choice",
    "in_range",
    "load_config",
    "not_empty",
    "port_number",
    "render_example",
]

#: Prefix of every environment variable the daemons read.
ENV_PREFIX: Final = "P1LORA_"
#: Environment variable naming the config file (like `--config`).
CONFIG_ENV: Final = "P1LORA_CONFIG"
#: Config files larger than this are refused (a wrong path, such as a log file).
_MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(Exception):
    """One or more configuration problems; each message names the key it is about."""

    def __init__(self, problems: str | Sequence[str], *, path: Path | None = None) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        #: The config file involved, if one was read (for the summary line).
        self.path = path
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------------------------- kinds


def _describe(value: object) -> str:
    """A value as the user wrote it, for 'expected X, got Y' messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {_quote(value)}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _type_name(value: object) -> str:
    """Only the type of a value (for secrets, whose value must not be shown)."""
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number"}
    if type(value) in names:
        return names[type(value)]
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # TOML dates and times


def _quote(text: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for everything we print)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Kind:
    """A value type: how to read it from a flag/environment string and from TOML, and how to
    print it back as TOML. The parse functions raise ValueError with the problem (no key)."""

    label: str
    metavar: str
    from_text: Callable[[str], object]
    from_toml: Callable[[object], object]
    to_toml: Callable[[object], str]
    choices: tuple[str, ...] = ()
    is_bool: bool = False


def _expect(label: str, value: object) -> ValueError:
    hint = ""
    if isinstance(value, str) and label in ("an integer", "a number"):
        hint = " (write numbers without quotes)"
    elif isinstance(value, str) and label == "true or false":
        hint = " (write true or false without quotes)"
    return ValueError(f"expected {label}, got {_describe(value)}{hint}")


def _int_text(text: str) -> int:
    try:
        return int(text.strip().replace("_", ""), 10)
    except ValueError:
        raise ValueError(f"expected an integer, got {_quote(text)}") from None


#: Floats written for integers (``port = 1883.0``) are accepted up to here, where every
#: integer is still exact; beyond it ``1e300`` would become a 301-digit integer in messages.
_EXACT_FLOAT_INT = 2**53


def _int_toml(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT:
        return int(value)
    raise _expect("an integer", value)


def _float_text(text: str) -> float:
    try:
        value = float(text.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"expected a number, got {_quote(text)}") from None
    return _finite(value)


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return value


def _float_toml(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return _finite(float(value))
        except OverflowError:  # an integer beyond the float range
            raise ValueError("expected a finite number, got a number too large") from None
    raise _expect("a number", value)


def _str_toml(value: object) -> str:
    if isinstance(value, str):
        return value
    raise _expect("a string", value)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool_text(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected true or false (also yes/no, on/off, 1/0), got {_quote(text)}")


def _bool_toml(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _expect("true or false", value)


def _path_text(text: str) -> Path:
    if not text.strip():
        raise ValueError("expected a path, got an empty string")
    if "\x00" in text:
        raise ValueError("a path cannot contain a NUL character")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~user" of an unknown user, or "~" without a home directory
        raise ValueError(
            f"cannot expand ~ in {_quote(text)}: no such user or no home directory"
        ) from None


def _path_toml(value: object) -> Path:
    return _path_text(_str_toml(value))


def _render_number(value: object) -> str:
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else f"{value:.1f}"
    return str(value)


STRING: Final = Kind("a string", "TEXT", str, _str_toml, lambda v: _quote(str(v)))
INTEGER: Final = Kind("an integer", "N", _int_text, _int_toml, str)
NUMBER: Final = Kind("a number", "X", _float_text, _float_toml, _render_number)
BOOLEAN: Final = Kind(
    "true or false",
    "BOOL",
    _bool_text,
    _bool_toml,
    lambda v: "true" if v else "false",
    is_bool=True,
)
PATH: Final = Kind("a path", "PATH", _path_text, _path_toml, lambda v: _quote(str(v)))


def choice(*values: str, metavar: str | None = None, fold_case: bool = True) -> Kind:
    """One of a fixed set of words (matched case-insensitively unless `fold_case` is False)."""
    allowed = tuple(values)
    listed = ", ".join(allowed)

    def parse(text: str) -> str:
        for value in allowed:
            if text == value or (fold_case and text.strip().lower() == value.lower()):
                return value
        near = difflib.get_close_matches(text.strip().lower(), allowed, n=1)
        hint = f"; did you mean {_quote(near[0])}?" if near else ""
        raise ValueError(f"{_quote(text)} is not one of {listed}{hint}")

    def parse_toml(value: object) -> str:
        if not isinstance(value, str):
            # A TOML number for a choice such as serial.mode = 5: accept it when it names one.
            if isinstance(value, int | float) and not isinstance(value, bool):
                text = str(value)
                if text in allowed:
                    return text
            raise ValueError(f"expected one of {listed}, got {_describe(value)}")
        return parse(value)

    return Kind(
        f"one of {listed}",
        metavar or "{" + ",".join(allowed) + "}",
        parse,
        parse_toml,
        lambda v: _quote(str(v)),
        choices=allowed,
    )


# ---------------------------------------------------------------------------------- checks

#: A validator: returns the problem with a (valid-typed) value, or None when it is fine.
Check = Callable[[Any], str | None]


def in_range(low: float, high: float, unit: str = "") -> Check:
    """`low <= value <= high`; the message states the range (and unit)."""
    suffix = f" {unit}" if unit else ""

    def check(value: float) -> str | None:
        if low <= value <= high:
            return None
        return f"{_render_number(value)} is outside {_render_number(low)}..{_render_number(high)}{suffix}"

    return check


def port_number(value: int) -> str | None:
    """A TCP/UDP port."""
    if 1 <= value <= 65535:
        return None
    return f"{value} is not a port number (1-65535)"


def not_empty(value: str) -> str | None:
    """Text with something in it besides white space."""
    return None if value.strip() else "must not be empty"


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Option:
    """One setting. `default=None` means "not set" (the option is optional).

    `flag` overrides the derived ``--section-key``; `cli=False` gives no flag at all (secrets).
    `example` is the value the example config shows active (uncommented) for a new install;
    `sample` a value it shows commented out for an option that is unset by default.
    """

    section: str
    key: str
    kind: Kind
    default: object
    help: str
    check: Check | None = None
    flag: str | None = None
    secret: bool = False
    cli: bool = True
    metavar: str | None = None
    example: object = None
    sample: object = None

    @property
    def name(self) -> str:
        """`section.key`: how every message refers to the option."""
        return f"{self.section}.{self.key}"

    @property
    def flag_name(self) -> str:
        return self.flag or f"--{self.section}-{self.key}".replace("_", "-")

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.flag_name.removeprefix("--").replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return f"{self.section}__{self.key}"

    def parse_text(self, text: str) -> object:
        return self.kind.from_text(text)


class OptionDetails(TypedDict, total=False):
    """An `Option`'s keyword fields, for rows whose section, key, kind and default come from
    elsewhere (a dataclass field's metadata: see `p1lora.receiver.options`)."""

    help: Required[str]
    check: Check
    flag: str
    secret: bool
    cli: bool
    metavar: str
    example: object
    sample: object


@dataclass(frozen=True, slots=True)
class Exclusive:
    """Alternatives of which at most one may be set (each alternative is a tuple of names).

    The alternative set at the highest precedence wins; the others are reset to their defaults.
    """

    alternatives: tuple[tuple[str, ...], ...]
    hint: str = ""


#: A cross-option check: gets the resolved values, returns the problems it found.
CrossCheck = Callable[["Config"], Iterable[str]]


@dataclass(frozen=True)
class OptionTable:
    """Everything one daemon can be configured with, plus how its options relate."""

    program: str
    role: str
    default_path: Path
    options: tuple[Option, ...]
    sections: Mapping[str, str]
    exclusive: tuple[Exclusive, ...] = ()
    checks: tuple[CrossCheck, ...] = ()
    #: Shown at the top of the example config.
    intro: str = ""
    _by_name: dict[str, Option] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Option] = {}
        flags: set[str] = set()
        for option in self.options:
            if option.section not in self.sections:
                raise ValueError(f"option {option.name}: section {option.section!r} is not listed")
            if option.name in by_name:
                raise ValueError(f"option {option.name} is defined twice")
            if option.cli and option.flag_name in flags:
                raise ValueError(f"flag {option.flag_name} is used twice")
            if option.secret and option.cli:
                raise ValueError(f"secret option {option.name} must not have a flag")
            by_name[option.name] = option
            flags.add(option.flag_name)
        for group in self.exclusive:
            for alternative in group.alternatives:
                for name in alternative:
                    if name not in by_name:
                        raise ValueError(f"exclusive group names unknown option {name}")
        object.__setattr__(self, "_by_name", by_name)

    def __getitem__(self, name: str) -> Option:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def in_section(self, section: str) -> list[Option]:
        return [o for o in self.options if o.section == section]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add `--config` and one flag per option, grouped by section.

        Defaults are suppressed, so the namespace only holds what the user typed; values stay
        text and are parsed by `load_config` with the same rules as the file and environment.
        """
        parser.add_argument(
            "--config",
            metavar="FILE",
            default=argparse.SUPPRESS,
            help=f"the TOML config file (default: {self.default_path}, or ${CONFIG_ENV}; a "
            "missing default file is fine, a missing file named here is an error)",
        )
        for section, title in self.sections.items():
            options = [o for o in self.in_section(section) if o.cli]
            if not options:
                continue
            group = parser.add_argument_group(f"[{section}]", title)
            for option in options:
                _add_flag(group, option)


def _default_text(option: Option) -> str:
    if option.default is None:
        return "not set"
    return option.kind.to_toml(option.default)


def _add_flag(group: argparse._ArgumentGroup, option: Option) -> None:
    where = f"[{option.section}] {option.key}, ${option.env_name}; default: {_default_text(option)}"
    help_text = f"{option.help} ({where})".replace("%", "%%")
    if option.kind.is_bool:
        group.add_argument(
            option.flag_name,
            dest=option.dest,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
        return
    group.add_argument(
        option.flag_name,
        dest=option.dest,
        default=argparse.SUPPRESS,
        metavar=option.metavar or option.kind.metavar,
        help=help_text,
    )


# ---------------------------------------------------------------------------------- result


class Source(enum.IntEnum):
    """Where a value came from; higher wins."""

    DEFAULT = 0
    FILE = 1
    ENV = 2
    FLAG = 3


@dataclass(frozen=True, slots=True)
class _Origin:
    source: Source
    detail: str = ""

    def describe(self) -> str:
        return self.source.name.lower() + (f" {self.detail}" if self.detail else "")


class Config:
    """The resolved configuration: a value per option and where it came from."""

    def __init__(
        self,
        table: OptionTable,
        values: dict[str, object],
        origins: dict[str, _Origin],
        path: Path | None,
        *,
        path_explicit: bool = False,
        notes: Sequence[str] = (),
    ) -> None:
        self.table = table
        self._values = values
        self._origins = origins
        #: The config file that was read (None: none was found or given).
        self.path = path
        self.path_explicit = path_explicit
        #: Things worth telling the user that are not errors (e.g. an overridden alternative).
        self.notes: list[str] = list(notes)

    def __getitem__(self, name: str) -> object:
        return self._values[name]

    def __repr__(self) -> str:
        shown = {
            n: ("<redacted>" if self.table[n].secret and v is not None else v)
            for n, v in self._values.items()
        }
        return f"Config({self.table.program}, {shown!r})"

    def source(self, name: str) -> Source:
        return self._origins[name].source

    def origin(self, name: str) -> str:
        """Human description of where `name` came from ("file", "env P1LORA_X", ...)."""
        return self._origins[name].describe()

    def is_set(self, name: str) -> bool:
        """Given explicitly (file, environment or flag) rather than left at its default."""
        return self._origins[name].source is not Source.DEFAULT and self._values[name] is not None

    # Typed accessors: the table guarantees the type; these make it visible to mypy.

    def get_str(self, name: str) -> str:
        value = self._values[name]
        assert isinstance(value, str), name
        return value

    def opt_str(self, name: str) -> str | None:
        value = self._values[name]
        assert value is None or isinstance(value, str), name
        return value

    def get_int(self, name: str) -> int:
        value = self._values[name]
        assert isinstance(value, int), name
        return value

    def opt_int(self, name: str) -> int | None:
        value = self._values[name]
        assert value is None or isinstance(value, int), name
        return value

    def get_float(self, name: str) -> float:
        value = self._values[name]
        assert isinstance(value, int | float), name
        return float(value)

    def opt_float(self, name: str) -> float | None:
        value = self._values[name]
        assert value is None or isinstance(value, int | float), name
        return None if value is None else float(value)

    def get_bool(self, name: str) -> bool:
        value = self._values[name]
        assert isinstance(value, bool), name
        return value

    def opt_bool(self, name: str) -> bool | None:
        value = self._values[name]
        assert value is None or isinstance(value, bool), name
        return value

    def get_path(self, name: str) -> Path:
        value = self._values[name]
        assert isinstance(value, Path), name
        return value

    def opt_path(self, name: str) -> Path | None:
        value = self._values[name]
        assert value is None or isinstance(value, Path), name
        return value

    def render(self, *, redact: bool = True) -> str:
        """The effective configuration as TOML, each value annotated with its origin.

        Secrets show as "<redacted>" (the output is meant to be pasted into bug reports).
        Unset options appear as comments, so the output lists every option there is.
        """
        lines = [f"# effective configuration of {self.table.program}"]
        if self.path is not None:
            lines.append(f"# config file: {self.path}")
        else:
            lines.append("# config file: none (flags, environment and defaults only)")
        for section in self.table.sections:
            options = self.table.in_section(section)
            if not options:
                continue
            lines.extend(("", f"[{section}]"))
            width = max(len(o.key) for o in options)
            for option in options:
                value = self._values[option.name]
                origin = self.origin(option.name)
                if value is None:
                    lines.append(f"# {option.key} is not set")
                    continue
                text = '"<redacted>"' if option.secret and redact else option.kind.to_toml(value)
                lines.append(f"{option.key:<{width}} = {text}  # {origin}")
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- loading


def _suggest(word: str, candidates: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _read_file(path: Path, explicit_by: str | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The parsed TOML document (None when a default file is missing), and any problems.

    Every way a file can be wrong is a problem (exit 2), never an exception or a hang: only
    regular files are read (a FIFO would block the start, /dev/zero would fill memory), at
    most 1 MiB, and a document nested too deeply for tomllib's recursion is invalid TOML.
    """
    raw, problems = _read_bytes(path, explicit_by)
    if raw is None:
        return None, problems
    return _parse_toml(path, raw)


def _read_bytes(path: Path, explicit_by: str | None) -> tuple[bytes | None, list[str]]:
    """The file's bytes, or None and why not (nothing when a default file is missing)."""
    try:
        return read_regular_file(path, _MAX_CONFIG_BYTES).data, []
    except FileNotFoundError:
        if explicit_by is None:
            return None, []
        return None, [f"config file {path} does not exist (given by {explicit_by})"]
    except UnsuitableFileError as exc:
        if exc.too_large:
            return None, [f"config file {path} is larger than 1 MiB; is it the right file?"]
        return None, [f"config file {exc}"]
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            return None, [f"config file {path} is a directory, not a TOML file"]
        return None, [f"cannot read config file {path}: {exc.strerror or exc}"]


def _parse_toml(path: Path, raw: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """The TOML document in `raw`, or None and the problem (with its line where known)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [f"config file {path} is not UTF-8 text (line {line})"]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line N, column M)".
        return None, [f"config file {path} is not valid TOML: {exc}"]
    except ValueError:
        # Not a TOMLDecodeError: Python refuses integers of more than 4300 digits.
        return None, [f"config file {path} is not valid TOML: a number is too long"]
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively (no depth limit).
        return None, [f"config file {path} is not valid TOML: nested too deeply"]


def _unknown_key_message(table: OptionTable, section: str, key: str) -> str:
    options = table.in_section(section)
    near = _suggest(key, [o.key for o in options])
    if near is not None:
        return f"unknown key {section}.{key}; did you mean {section}.{near}?"
    elsewhere = [o.name for o in table.options if o.key == key]
    if elsewhere:
        return f"unknown key {section}.{key}; did you mean {' or '.join(elsewhere)}?"
    known = ", ".join(o.key for o in options)
    return f"unknown key {section}.{key} (known keys in [{section}]: {known})"


def _is_table_array(value: object) -> bool:
    """`[[name]]` in TOML: a non-empty array whose items are all tables."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _unknown_top_level_message(table: OptionTable, name: str, body: object) -> str:
    """The problem with a top-level entry that is not one of the table's sections.

    A table (``[bogus]``, ``[[bogus]]``) is an unknown section; a plain value (``port = 1``)
    is a key outside any section, most often one whose ``[section]`` line is missing above it.
    Every hint is optional: there may be no near section name and no option of that name.
    """
    sections = ", ".join(f"[{s}]" for s in table.sections)
    if isinstance(body, dict) or _is_table_array(body):
        shown = f"[{name}]" if isinstance(body, dict) else f"[[{name}]]"
        near = _suggest(name, table.sections)
        hint = f"; did you mean [{near}]?" if near else f" (known: {sections})"
        return f"unknown section {shown}{hint}"
    elsewhere = [o.name for o in table.options if o.key == name]
    if not elsewhere:
        near_key = _suggest(name, sorted({o.key for o in table.options}))
        elsewhere = [o.name for o in table.options if o.key == near_key]
    if elsewhere:
        where = " or ".join(f"{n} (under [{n.split('.', 1)[0]}])" for n in elsewhere)
        return f"key {_quote(name)} is outside any section; did you mean {where}?"
    return f"key {_quote(name)} is outside any section; put it under one of {sections}"


def _file_values(
    table: OptionTable, document: Mapping[str, Any], path: Path
) -> tuple[dict[str, object], list[str]]:
    values: dict[str, object] = {}
    problems: list[str] = []
    for section, body in document.items():
        if section not in table.sections:
            problems.append(_unknown_top_level_message(table, section, body))
            continue
        if _is_table_array(body):
            problems.append(
                f"[[{section}]] is an array of tables: write one section [{section}] instead"
            )
            continue
        if not isinstance(body, dict):
            problems.append(f"{section} must be a section ([{section}]), not a value")
            continue
        for key, raw in body.items():
            name = f"{section}.{key}"
            if name not in table:
                problems.append(_unknown_key_message(table, section, key))
                continue
            option = table[name]
            try:
                value = option.kind.from_toml(raw)
            except ValueError as exc:
                problems.append(_value_problem(option, exc, raw))
                continue
            if isinstance(value, Path) and not value.is_absolute():
                # Relative paths in a file are relative to the file, not to wherever the
                # daemon happened to be started from.
                value = path.parent / value
            values[name] = value
    return values, problems


def _value_problem(option: Option, exc: ValueError, raw: object) -> str:
    if option.secret:
        return f"{option.name}: expected {option.kind.label}, got {_type_name(raw)}"
    return f"{option.name}: {exc}"


def _text_value(option: Option, text: str, where: str) -> tuple[object, str | None]:
    if option.default is None and text == "":
        return None, None  # an empty flag or variable clears an optional setting
    try:
        return option.parse_text(text), None
    except ValueError as exc:
        if option.secret:
            return None, f"{option.name} (from {where}): expected {option.kind.label}"
        return None, f"{option.name} (from {where}): {exc}"


def _resolve_exclusive(
    table: OptionTable,
    values: dict[str, object],
    origins: dict[str, _Origin],
    problems: list[str],
    notes: list[str],
) -> None:
    for group in table.exclusive:
        ranked: list[tuple[Source, tuple[str, ...], list[str]]] = []
        for alternative in group.alternatives:
            chosen = [
                n
                for n in alternative
                if values[n] is not None and origins[n].source is not Source.DEFAULT
            ]
            if chosen:
                top = max(origins[n].source for n in chosen)
                ranked.append((top, alternative, chosen))
        if len(ranked) < 2:
            continue
        best = max(rank for rank, _, _ in ranked)
        winners = [entry for entry in ranked if entry[0] == best]
        if len(winners) > 1:
            names = " and ".join(entry[2][0] for entry in winners)
            where = origins[winners[0][2][0]].describe()
            hint = f": {group.hint}" if group.hint else ": set only one of them"
            problems.append(f"{names} are both set ({where}){hint}")
            continue
        winner = winners[0]
        for rank, alternative, chosen in ranked:
            if alternative is winner[1]:
                continue
            for name in alternative:
                values[name] = table[name].default
                origins[name] = _Origin(Source.DEFAULT, f"(overridden by {winner[2][0]})")
            notes.append(
                f"{', '.join(chosen)} ({rank.name.lower()}) ignored: "
                f"{winner[2][0]} ({best.name.lower()}) takes precedence"
            )


def load_config(
    table: OptionTable,
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    path: Path | str | None = None,
) -> Config:
    """Resolve every option: flags (`args`, from a parser set up by `table.add_arguments`) >
    environment > file > defaults. Raises `ConfigError` listing every problem found.

    The file is `path` if given (explicit), else `--config`, else `$P1LORA_CONFIG` (both
    explicit: must exist), else `table.default_path` (may be missing).
    """
    env = os.environ if environ is None else environ
    given = vars(args) if args is not None else {}
    problems: list[str] = []
    notes: list[str] = []

    file_path, explicit_by = _config_file(table, path, given, env)

    values: dict[str, object] = {o.name: o.default for o in table.options}
    origins: dict[str, _Origin] = {o.name: _Origin(Source.DEFAULT) for o in table.options}

    document, file_problems = _read_file(file_path, explicit_by)
    problems.extend(file_problems)
    loaded_path: Path | None = None
    if document is not None:
        loaded_path = file_path
        from_file, value_problems = _file_values(table, document, file_path)
        problems.extend(value_problems)
        for name, value in from_file.items():
            values[name] = value
            origins[name] = _Origin(Source.FILE)

    _apply(_env_updates(table, env), values, origins, problems)
    _apply(_flag_updates(table, given), values, origins, problems)
    _check_values(table, values, origins, problems)

    if problems:
        raise ConfigError(problems, path=loaded_path)
    _resolve_exclusive(table, values, origins, problems, notes)
    if problems:
        raise ConfigError(problems, path=loaded_path)
    config = Config(
        table, values, origins, loaded_path, path_explicit=explicit_by is not None, notes=notes
    )
    for check in table.checks:
        problems.extend(check(config))
    if problems:
        raise ConfigError(problems, path=loaded_path)
    return config


def _config_file(
    table: OptionTable,
    path: Path | str | None,
    given: Mapping[str, Any],
    env: Mapping[str, str],
) -> tuple[Path, str | None]:
    """The config file to read and who named it (None: the table's default, may be missing)."""
    explicit_by: str | None = None
    if path is not None:
        file_path, explicit_by = Path(path), "the command line"
    elif given.get("config"):
        file_path, explicit_by = Path(str(given["config"])), "--config"
    elif env.get(CONFIG_ENV):
        file_path, explicit_by = Path(env[CONFIG_ENV]), f"${CONFIG_ENV}"
    else:
        file_path = table.default_path
    return file_path.expanduser(), explicit_by


# One option's value from a source, or the problem with it, and where it came from.
_Update = tuple[Option, object, str | None, _Origin]


def _apply(
    updates: Iterable[_Update],
    values: dict[str, object],
    origins: dict[str, _Origin],
    problems: list[str],
) -> None:
    """A later source overrides what the earlier ones set; a bad value is a problem instead."""
    for option, value, problem, origin in updates:
        if problem is not None:
            problems.append(problem)
            continue
        values[option.name] = value
        origins[option.name] = origin


def _env_updates(table: OptionTable, env: Mapping[str, str]) -> Iterator[_Update]:
    """The options set in the environment; an empty variable counts as unset."""
    for option in table.options:
        text = env.get(option.env_name)
        if text is None or (text == "" and option.default is not None):
            continue
        value, problem = _text_value(option, text, f"${option.env_name}")
        yield option, value, problem, _Origin(Source.ENV, option.env_name)


def _flag_updates(table: OptionTable, given: Mapping[str, Any]) -> Iterator[_Update]:
    """The options given as command-line flags."""
    for option in table.options:
        if not option.cli or option.dest not in given:
            continue
        raw = given[option.dest]
        value: object
        problem: str | None
        if isinstance(raw, bool):
            value, problem = raw, None
        else:
            value, problem = _text_value(option, str(raw), option.flag_name)
        yield option, value, problem, _Origin(Source.FLAG, option.flag_name)


def _check_values(
    table: OptionTable,
    values: dict[str, object],
    origins: dict[str, _Origin],
    problems: list[str],
) -> None:
    """Each option's own check on its final value (skipped when reading it already failed)."""
    for option in table.options:
        value = values[option.name]
        if value is None or option.check is None:
            continue
        if any(
            p.startswith(f"{option.name}:") or p.startswith(f"{option.name} (") for p in problems
        ):
            continue
        problem = option.check(value)
        if problem is not None:
            where = (
                "" if origins[option.name].source is Source.FILE else _where(origins[option.name])
            )
            problems.append(f"{option.name}{where}: {problem}")


def _where(origin: _Origin) -> str:
    if origin.source is Source.DEFAULT:
        return " (default)"
    if origin.source is Source.ENV:
        return f" (from ${origin.detail})"
    return f" (from {origin.detail})"


# ---------------------------------------------------------------------------------- examples


def _comment_block(text: str, width: int = 96) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = "#"
    for word in words:
        if len(current) + 1 + len(word) > width and current != "#":
            lines.append(current)
            current = "#"
        current += " " + word
    if current != "#":
        lines.append(current)
    return lines


def render_example(table: OptionTable) -> str:
    """The example config for `table`: every option, each with its help, flag and variable.

    Options with an `example` value appear active (what a new install sets); all others are
    commented out at their default, so uncommenting a line is all it takes to change one.
    `deploy/config/*.toml` are this function's output (a test keeps them in step).
    """
    lines: list[str] = []
    if table.intro:
        lines.extend(_comment_block(table.intro))
        lines.append("#")
    lines.extend(
        _comment_block(
            "Every option can also be set with a command-line flag or an environment "
            "variable (shown with each option); precedence: flags > environment > this file "
            "> defaults. Check a file with: p1-lora config check FILE"
        )
    )
    for section, title in table.sections.items():
        options = table.in_section(section)
        if not options:
            continue
        lines.extend(("", f"[{section}]"))
        lines.extend(_comment_block(title))
        for option in options:
            lines.append("")
            lines.extend(_comment_block(option.help))
            flag = option.flag_name if option.cli else "no flag: secret"
            if option.cli and option.kind.is_bool:
                flag = "--[no-]" + flag.removeprefix("--")
            lines.append(f"# ({flag}, ${option.env_name})")
            if option.example is not None:
                lines.append(f"{option.key} = {option.kind.to_toml(option.example)}")
            elif option.default is None and option.sample is not None:
                lines.append(f"#{option.key} = {option.kind.to_toml(option.sample)}")
            elif option.default is None:
                lines.append(f"#{option.key} =  (not set by default)")
            else:
                lines.append(f"#{option.key} = {option.kind.to_toml(option.default)}")
    return "\n".join(lines) + "\n"
