"""``accel`` subcommands that accel-big-model provides (entry-point group ``accel.commands``)."""
