"""``keystrap install``: the installer turns a bundle into node files."""

from __future__ import annotations

import argparse
from pathlib import Path

from keystrap.oob.medium import MEDIA


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    install = sub.add_parser("install", help="installer: turn a bundle into node files")
    install.add_argument("bundle", type=Path, help="the bundle from keystrap admin order create")
    install.add_argument("--out", type=Path, required=True, help="directory for node files")
    install.add_argument(
        "--channel-up",
        choices=MEDIA,
        default="qr",
        help="the devices' medium towards the controller (default qr)",
    )
    install.add_argument(
        "--channel-down",
        choices=MEDIA,
        default="qr",
        help="the devices' medium from the controller (default qr)",
    )
    install.add_argument(
        "--force",
        action="store_true",
        help="replace existing node files that hold no PSK (one that does is never replaced)",
    )


def run(args: argparse.Namespace) -> int:
    from keystrap.enrolment import install_bundle

    written = install_bundle(
        args.bundle, args.out, args.channel_up, args.channel_down, force=args.force
    )
    print(f"{len(written)} node file(s) written to {args.out} (mode 0600)")
    return 0
