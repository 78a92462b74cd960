"""Subcommands of the ``hashlab`` console script; each module exposes ``register(subparsers)``."""
