"""Persistent state: the server's SQLite key repository, the controller's
transaction store and the node's state file. Keys are wrapped (RFC 3394) under
a master key read from a 0600 file, or the file itself is 0600."""
