"""The link state machines: TxLink (meter closet) and RxLink (home), sans-I/O.

Events go in (telegram ready, frame received, transmission done, time passed), actions come
out (transmit this payload with these settings, apply settings, deliver this telegram, persist
a counter reservation, report a link event). See docs/protocol.md.
"""
