"""`p1-lora keygen --out FILE`: write a new pre-shared key file and say how to use it.

Both daemons need the same 256-bit key. This writes one from the operating system's random
source into a new file with mode 0600 (never world-readable, not even for a moment), refuses to
replace an existing key unless `--force` (replacing it cuts the link until the other side has
the new file), and prints the config lines for both daemons plus the systemd credential line.
The key itself is never printed: copy the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import socket
from pathlib import Path
from typing import Final

from p1lora.receiver.options import RX_OPTIONS
from p1lora.service.keyfile import PresharedKey, generate_key, write_key_file
from p1lora.service.options import KEY_CREDENTIAL
from p1lora.transmitter.options import TX_OPTIONS

__all__ = ["configure", "run", "usage_lines"]

logger = logging.getLogger(__name__)

EPILOG: Final = """\
examples:
  sudo p1-lora keygen --out /etc/p1-lora/key
  p1-lora keygen --out ./key          for a test with --radio sim

Copy the file to the other Pi keeping its mode (scp -p, or chmod 600 afterwards).
Exit codes: 0 written, 1 the file could not be written, 2 bad arguments or FILE exists."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `p1-lora keygen` arguments."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Write a new random pre-shared key file (mode 0600) for p1-lora-tx and p1-lora-rx, "
        "and print the config lines that use it."
    )
    parser.epilog = EPILOG
    parser.add_argument(
        "--out", metavar="FILE", required=True, help="where to write the key (a new file)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace FILE if it exists (the other side then needs the new key too)",
    )


def usage_lines(path: Path, key: PresharedKey) -> str:
    """What to put in both configs (and the unit) for the key file at `path`."""
    quoted = str(path).replace("\\", "\\\\").replace('"', '\\"')
    blocks = [
        f'# in {table.default_path} ({table.program}):\n[link]\nkey_file = "{quoted}"\n'
        for table in (TX_OPTIONS, RX_OPTIONS)
    ]
    return (
        f"Wrote a new pre-shared key to {path} (mode 0600, network id {key.network_id}).\n"
        "Give both Pis the same file (scp -p keeps its mode) and use it in both configs:\n\n"
        + "\n".join(blocks)
        + f"\n# or on the command line: --key-file {path}\n"
        f"# under systemd the units pass it as a credential:\n"
        f"#   LoadCredential={KEY_CREDENTIAL}:{path}\n"
    )


def run(args: argparse.Namespace) -> int:
    """Write the key file; see the module docstring for the exit codes."""
    text = str(args.out)
    if not text.strip():
        logger.error("--out: the file name is empty")
        return 2
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        logger.error("--out: %s is a directory; name the key file, e.g. %s/key", path, path)
        return 2
    if not path.parent.is_dir():
        logger.error(
            "--out: directory %s does not exist (create it first, e.g. sudo mkdir -p %s)",
            path.parent,
            path.parent,
        )
        return 2
    if (path.exists() or path.is_symlink()) and not args.force:
        logger.error(
            "%s already exists; refusing to replace a key (the other side would stop "
            "understanding this one). Use --force to replace it",
            path,
        )
        return 2
    key = generate_key()
    shown = PresharedKey(key, str(path))
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    comment = (
        f"p1-lora pre-shared key, created {created} on {socket.gethostname()}; "
        f"network id {shown.network_id}.\n"
        "Keep it secret (mode 0600) and identical on p1-lora-tx and p1-lora-rx."
    )
    try:
        write_key_file(path, key, comment=comment, force=args.force)
    except FileExistsError:
        logger.error("%s already exists; use --force to replace it", path)
        return 2
    except OSError as exc:
        logger.error("cannot write %s: %s", path, exc.strerror or exc)
        return 1
    print(usage_lines(path, shown), end="")
    return 0
