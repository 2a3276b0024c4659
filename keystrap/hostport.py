"""``[HOST:]PORT`` as typed on a command line and kept in the controller's
store: one parser and one printer, so what is stored reads back the same."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 (names, not a bind)


def parse_host_port(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[v6]:PORT`` for IPv6), defaulting to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    if bracketed:
        host = host[1:-1]
    if not (port.isascii() and port.isdigit()) or not 2 <= int(port) <= 65535:
        raise ValueError(f"need [HOST:]PORT with a port from 2 to 65535, got {text!r}")
    if "[" in host or "]" in host or (":" in host and not bracketed):
        raise ValueError(f"need [HOST:]PORT, an IPv6 host in brackets ([::1]:PORT), got {text!r}")
    return host or DEFAULT_HOST, int(port)


def one_socket(a: str, b: str) -> bool:
    """Whether two ``[HOST:]PORT`` addresses cannot both be bound: one port on
    one host, or on a host and its family's wildcard."""
    (host_a, port_a), (host_b, port_b) = parse_host_port(a), parse_host_port(b)
    if port_a != port_b:
        return False
    wildcard = host_a in WILDCARDS or host_b in WILDCARDS
    return host_a == host_b or (wildcard and (":" in host_a) == (":" in host_b))


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
