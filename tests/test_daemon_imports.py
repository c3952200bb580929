"""The receiver's daemon does not load the transmitter's dependencies (pyserial).

`service` holds only what both daemons share; each daemon's own options live in its package.
When `service.options` still imported the transmitter's serial modes, starting `p1-lora-rx`
loaded pyserial, and a receiver without it installed could not start. A fresh interpreter
is the only honest place to check this: the test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(result.stdout))


def test_the_receiver_cli_does_not_import_serial() -> None:
    loaded = _modules_after_import("p1lora.receiver.cli")
    assert "serial" not in loaded
    assert not {m for m in loaded if m.startswith("p1lora.transmitter")}


@pytest.mark.parametrize("module", ["p1lora.service.daemon", "p1lora.service.options"])
def test_the_shared_service_imports_neither_daemon(module: str) -> None:
    loaded = _modules_after_import(module)
    daemons = {m for m in loaded if m.startswith(("p1lora.transmitter", "p1lora.receiver"))}
    assert daemons == set()
    assert "serial" not in loaded
