"""`p1-lora survey`: the runtime around `common.survey` (radio, clock, printing)."""
