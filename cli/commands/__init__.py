"""One module per command of ``python -m core``; each has ``register(subparsers)``."""
