"""Emulated constrained links (IEEE 802.15.4 with 6LoWPAN) for benchmarks and tests."""

from keystrap_lab.link.lowpan import LINK_PROFILES, LinkProfile, LinkStats, LowpanLink, frame_sizes

__all__ = ["LINK_PROFILES", "LinkProfile", "LinkStats", "LowpanLink", "frame_sizes"]
