"""An example deployment: a numpy linear regression plugin and its AIMM configuration."""
