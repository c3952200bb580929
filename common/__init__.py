"""p1lora.common: the sans-I/O core shared by transmitter and receiver.

Everything here is pure computation on bytes, values and an injected clock: DSMR framing,
CRC and parsing, the telegram codec, frames and crypto, airtime and region rules, and the
link state machines. Nothing in this package sleeps, reads the wall clock, or opens a device
or socket; that is what lets the simulator run an hour of link time in seconds.
"""
