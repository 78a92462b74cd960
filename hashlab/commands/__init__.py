"""Stage 5, the ``hashlab`` console script: command-line arguments in, library calls and printed results out.

Each module exposes ``register(subparsers)``; parsing and printing only, the work is in the stages above.
"""
