"""Built-in ``accel`` subcommands: one module per command, each with ``register(subparsers)``.

Example:
    >>> from accel.launch.commands import config
    >>> callable(config.register)
    True
"""
