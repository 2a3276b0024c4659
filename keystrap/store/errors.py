class StoreError(Exception):
    """A state file, key file or database is missing, unreadable or inconsistent."""
