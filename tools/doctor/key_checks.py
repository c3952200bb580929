"""The pre-shared key: readable by this user, private, and its network id (compare both Pis).

The daemon refuses a key file that group or others can read, and so does this check, with the
same message: `service.keyfile.read_key_file` is the one reader. Under systemd the unit hands
the key over as a credential (`LoadCredential=`), so the daemon's user is *not* meant to read
the root-owned file: run as that user, the doctor says so as a warning and leaves the key to
`sudo p1-lora doctor`, which reads it and prints the network id.
"""

from __future__ import annotations

import os

from p1lora.service.keyfile import KeyFileError, read_key_file
from p1lora.tools.doctor.findings import Finding, failed, passed, warned
from p1lora.tools.doctor.setup import DoctorSetup

__all__ = ["check_key"]


def check_key(setup: DoctorSetup) -> list[Finding]:
    """Findings "key" and "network-id"."""
    if setup.key_file is None:
        return [
            failed(
                "key",
                "no key file configured",
                "create one with `p1-lora keygen --out /etc/p1-lora/key`, copy the same file to "
                "both Pis and set key_file in [link] (or --key-file FILE)",
                "key-file",
            )
        ]
    if setup.key_file.exists() and not os.access(setup.key_file, os.R_OK):
        return [
            warned(
                "key",
                f"this user cannot read {setup.key_file} (expected: the service gets it through "
                "LoadCredential=)",
                "run `sudo p1-lora doctor` with the same config once to check the key and see "
                "the network id",
                "key-file",
            )
        ]
    try:
        key = read_key_file(setup.key_file)
    except KeyFileError as exc:
        return [failed("key", str(exc), _fix(str(exc), setup), "key-file")]
    return [
        passed("key", f"{setup.key_file} is readable and private (mode 0600)"),
        passed(
            "network-id",
            f"{key.network_id}: the other Pi's doctor must print the same id (else the key "
            "files differ)",
        ),
    ]


def _fix(message: str, setup: DoctorSetup) -> str:
    """The one thing to do, taken from the reader's message where it names it."""
    if "chmod 600" in message:
        return f"chmod 600 {setup.key_file} (and consider a new key: p1-lora keygen)"
    if "does not exist" in message:
        return f"p1-lora keygen --out {setup.key_file}, then copy it to the other Pi"
    return "write the key file again with p1-lora keygen, the same file on both Pis"
