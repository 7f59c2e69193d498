"""The supervisor: arbiter -> pool -> worker, the .ini option registry, scaling policy and control API."""
