"""Where duetto keeps things: paths, the SQLite database and its migrations."""
