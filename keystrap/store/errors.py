class StoreError(Exception):
    """A state file, key file or database is missing, unreadable or inconsistent."""


class StoreInterrupted(StoreError):
    """The batch's transaction is gone (the connection to the database was lost, or
    a write failed halfway and took the batch with it): nothing of the batch was
    kept, so it can be run again from its start."""
