"""p1lora.hardware: radio backends.

The SX127x register driver (over tiny SPI and GPIO interfaces), board pin maps for common
Raspberry Pi HATs, a register-level SX127x emulator, and a simulated RF channel that lets
emulated radios hear each other in-process or across processes over loopback UDP.
Real SPI/GPIO libraries are imported lazily, so this package imports on any machine.
"""
