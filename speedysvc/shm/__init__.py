"""Shared-memory transport: a per-service call queue, per-client channels, an event ring."""
