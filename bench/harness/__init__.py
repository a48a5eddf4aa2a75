"""oneplan benchmark harness: see bench/README.md and harness/cli.py for the run order."""
