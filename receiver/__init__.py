"""p1lora.receiver: `p1-lora-rx`, the home side.

Receives frames, rebuilds telegrams, and publishes them to Home Assistant over MQTT
(discovery and state), to a raw telegram TCP server, and to the link-quality log.
"""
