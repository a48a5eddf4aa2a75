"""The in-process open-weight Qwen engine (provider kind ``local``).

Importing this package imports no torch: ``provider`` loads the engine lazily, so a gateway without
the ``local`` extra starts and only a request for a local model fails, with an install hint.
"""
