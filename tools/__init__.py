"""p1lora.tools: the `p1-lora` tool command and what sits above both daemons.

Subcommands (parse, meter, airtime, sim, keygen, config check, linkreport, bench, demo)
live here or are dispatched from here to the package that owns them.
"""
