"""``python -m duetto.app``: the same as the ``duetto`` command."""

from duetto.app.cli.main import main

main(prog_name="duetto")
