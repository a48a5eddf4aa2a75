"""The web console: pages, static assets, session sign-in, and the JSON endpoints it reads.

Every figure on a page comes from a documented JSON endpoint (``api.py`` for developers,
``admin_api.py`` for the operator); those read the hourly roll-up (``oneplan.metering.rollup``),
never scan the ledger (the ledger explorer pages through it by index).
"""
