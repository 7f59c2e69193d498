"""TCP transport: frames, the gateway that forwards to a pool, and NetworkClient."""
