"""``python -m amebo_logging.ship``: the same as the ``amebo-logship`` command."""

from .cli import run

run()
