"""Runnable examples of what oneplan is for (``python -m examples.<name>``)."""
