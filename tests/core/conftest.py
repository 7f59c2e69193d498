"""Markers of the core tests (the suite-wide fixtures live in tests/conftest.py)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "chaos: bounded chaos runs (SIGKILL of workers, callers and pool owners while calls run)")
