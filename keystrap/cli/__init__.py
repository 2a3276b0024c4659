"""The ``keystrap`` command (thin: parse arguments, call the layers below).

One module per subcommand, each with ``add_parser`` and ``run``, listed in
:mod:`keystrap.cli.commands`; the services' flags are generated from the
configuration schema (:mod:`keystrap.cli.flags`).
"""
