"""`p1-lora doctor`: the checks, one small module per kind (config, SPI, chip, band, P1 port).

Every check returns `Finding`s: what it looked at, what it saw, and for a failure the one thing
to do, with the docs/troubleshooting.md section that explains more. `doctor_command` runs them
in order and stops at the first kind whose failure makes the next meaningless (no SPI device:
no chip checks).
"""
