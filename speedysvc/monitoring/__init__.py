"""Log capture and query, metrics sampling and storage."""
