"""``accelerate.commands``: the command-line modules clients import (``launch``, ``config``)."""
