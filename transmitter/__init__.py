"""p1lora.transmitter: `p1-lora-tx`, the meter-closet side.

Reads telegrams from the P1 port (or a virtual meter), feeds them to the link, and drives
the radio. Also home of the virtual meter used by tests, the simulator and the demo.
"""
