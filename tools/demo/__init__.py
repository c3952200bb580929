"""`p1-lora demo`: the whole bridge on one machine, without hardware (see `command`).

One job per module:

| module         | job                                                                   |
|----------------|-----------------------------------------------------------------------|
| `command`      | the run: set up, watch, stop in order, report (`configure`, `run`)     |
| `options`      | the arguments and their check (`DemoOptions`, `UsageError`)            |
| `processes`    | supervision: children, their logs, `READY=1` over `$NOTIFY_SOCKET`     |
| `broker`       | which MQTT broker: mosquitto, the embedded one, or the user's          |
| `observer`     | the MQTT client that sees what Home Assistant would see                |
| `model`        | `DemoState`: the three feeds under one lock, snapshots                 |
| `bridge_model` | discovery configs, states, availability, telegrams (from MQTT)         |
| `link_facts`   | handshakes, auto-tune steps, link state (from the link-quality logs)   |
| `events`       | the event list: log lines shown as they are, never interpreted         |
| `views`        | the frozen snapshots renderers read                                    |
| `text`         | values and plain lines (stdout not a terminal)                         |
| `screen`       | the live terminal view                                                 |
| `summary`      | the end of a run, for people and as JSON                               |
"""
