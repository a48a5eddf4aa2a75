"""Quota alerts and weekly insights.

* ``config``: the catalog's ``[alerts]`` section (rules, plan defaults, channels, delivery).
* ``rules``: which rules apply to a user (plan defaults, team-wide rules, the user's own).
* ``detect``: threshold crossings and forecast-to-exhaustion from window states (pure).
* ``runaway``: a key or user far above its 7-day hourly median; providers' error rates.
* ``outbox``: crossings recorded once in the database, deliveries claimed with a lease.
* ``channels/``: one small module per channel behind ``Channel.send``.
* ``digest`` / ``digest_render``: the weekly insights, computed from the ledger and rendered.
* ``scheduler``: the leader-elected periodic work; ``service``: what a gateway process runs.

It knows nothing of HTTP routes or protocols: the gateway calls ``Alerts.observe(row)`` after
each request and the server exposes the settings endpoint.
"""
