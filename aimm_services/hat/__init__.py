"""AIMM inside Hat: the `hat` section, the connection held by the engine process, the
event backend and the event control (AIMM 1.2's event types and payloads)."""
