#!/usr/bin/env python3
"""Benchmark oneplan against LiteLLM's proxy and the bare upstream: `python bench/run.py`.

Needs only the standard library (Python >= 3.11) plus wrk and gcc from the Debian registry;
LiteLLM and matplotlib are installed by the harness into bench/.venvs/. See bench/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
