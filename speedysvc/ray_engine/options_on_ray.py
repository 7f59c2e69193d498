"""Which .ini options mean something for a service run by Ray Serve, and how they map.

Options without a meaning on Ray are reported as warnings (at --check-config and at start),
never as errors, so one .ini runs on either engine.
"""
from __future__ import annotations

# option -> why it has no effect on Ray (shown in the warning)
IGNORED_ON_RAY: dict[str, str] = {
    "port": "replicas are reached through Serve handles, not a TCP port",
    "tcp_bind": "replicas are reached through Serve handles, not TCP",
    "tcp_secret": "replicas are reached through Serve handles, not TCP",
    "tcp_max_frame_bytes": "replicas are reached through Serve handles, not TCP",
    "tcp_compression": "replicas are reached through Serve handles, not TCP",
    "force_insecure_serialisation": "inside a Ray cluster every encoder is allowed",
    "scale_down_busy": "Serve's autoscaler decides on ongoing requests (see scale_up_busy)",
    "scale_up_queue": "Serve's autoscaler counts queued calls as ongoing requests",
    "scale_down_intervals": "Serve's autoscaler uses downscale_delay_s (scale_down_cooldown)",
    "scale_step_max": "Serve's autoscaler sizes its own steps",
    "scale_up_max_cpu": "Ray places replicas by their reserved CPUs (ray_num_cpus)",
    "worker_hang_timeout": "Serve health-checks its replicas itself",
    "restart_backoff_initial": "Serve restarts replicas itself",
    "restart_backoff_max": "Serve restarts replicas itself",
    "crash_loop_restarts": "Serve restarts replicas itself",
    "crash_loop_window": "Serve restarts replicas itself",
    "crash_loop_backoff": "Serve restarts replicas itself",
}

# How the options that do apply become Serve settings (documented in the README):
#   min_proc_num / max_proc_num -> autoscaling min_replicas / max_replicas
#   scale_up_busy               -> target_ongoing_requests = scale_up_busy * max_ongoing_requests
#   scale_interval              -> metrics_interval_s; scale_interval * scale_up_intervals ->
#                                  look_back_period_s
#   scale_up_cooldown / scale_down_cooldown -> upscale_delay_s / downscale_delay_s
#   max_proc_mem_bytes          -> a memory reservation, and a failing health check (so Serve
#                                  replaces the replica) once its RSS is over the limit
#   graceful_timeout            -> graceful_shutdown_timeout_s
#   start_timeout               -> how long the application has to become RUNNING
#   ray_num_cpus, max_ongoing_requests -> ray_actor_options num_cpus, max_ongoing_requests


def ignored_options(explicit: set[str]) -> list[tuple[str, str]]:
    """(option, reason) for the options a user set that Ray does not use, in registry order."""
    return [(name, why) for name, why in IGNORED_ON_RAY.items() if name in explicit]
