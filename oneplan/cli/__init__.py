"""The ``oneplan`` command: noun sub-commands."""
