"""The Textual chat interface: ``duetto`` with no arguments."""
