"""Services bundled with speedysvc: example services and the device event/command API."""
