"""oneplan: one key for many model providers, with plans, quotas and an exact usage ledger."""

__version__ = "0.1.0"
