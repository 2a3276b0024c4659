"""Command-line entry points (thin: parse arguments, call the layers below)."""
