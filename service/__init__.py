"""p1lora.service: the daemon skeleton both `p1-lora-tx` and `p1-lora-rx` stand on.

In the style of sml2mqtt: the state directory (atomic, rare writes), the link-quality log,
systemd readiness and watchdog, signal handling and the main loop. Unlike `p1lora.common`,
this package does I/O; it holds no protocol decisions.
"""
