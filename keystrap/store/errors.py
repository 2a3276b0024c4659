class StoreError(Exception):
    """A state file, key file or database is missing, unreadable or inconsistent."""


class StoreInterrupted(StoreError):
    """The connection to the database was lost inside a batch: nothing of the batch
    was kept, so it can be run again from its start."""
