"""``python -m duetto``: the same as the ``duetto`` command.

This folder is the ``duetto`` namespace itself (setup.py maps it); the three packages of the
repository, app/, engine/ and store/, install beneath it as duetto.app, duetto.engine, duetto.store.
"""

from duetto.app.cli.main import main

main(prog_name="duetto")
