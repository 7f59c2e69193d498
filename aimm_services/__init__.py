"""speedysvc re-creation of the AIMM model manager: plugins, engine, backend, control."""
