"""Exit codes shared by the processes speedysvc starts and the ones that watch them."""

EXIT_OK = 0
EXIT_BOOT_FAILURE = 70   # EX_SOFTWARE: the supervisor could not start, or a service it waits for
EXIT_CONFIG = 78         # EX_CONFIG: the configuration is invalid
# A worker that cannot start for a reason restarting will not cure (its module does not import,
# its port is taken): its pool marks the service failed at once instead of retrying.
WORKER_CANNOT_HEAL = 78  # EX_CONFIG of sysexits.h
