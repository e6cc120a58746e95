"""Subcommands of the ``accel`` command that accel-core provides (``accel test``)."""
