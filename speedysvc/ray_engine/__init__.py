"""Running services on a Ray cluster through Ray Serve (engine = ray; ray:// addresses).

Nothing here imports Ray at module level except the modules that only load once Ray is
chosen: `pool` (the supervisor's RayServicePool), `client` (the ray:// provider), `replica`
(the Serve deployment), `board` (the per-service actor for readings, the at-most-once guard
and events) and `runtime` (connecting to or starting a cluster). `options_on_ray` and `names`
are plain Python, used by the configuration loader and by tests.
"""
import os as _os

# Before anything here imports Ray (it reads these at import): no usage reporting, and never
# an automatic ray.init() -- a Serve handle's thread outliving ray.shutdown() would otherwise
# start a Ray instance of its own.
_os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
_os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
