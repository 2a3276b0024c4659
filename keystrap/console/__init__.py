"""The operator's web console (``keystrap console``): server-rendered pages over the
server's store, for watching a rollout and acting on it.

It reads the store with its own queries (paged, so 10^6 nodes stay fast) and
changes it only through :mod:`keystrap.enrolment` and
:class:`keystrap.store.sqlite_repository.SqliteRepository`, the functions behind
``keystrap admin``, so both follow the same rules.
"""
