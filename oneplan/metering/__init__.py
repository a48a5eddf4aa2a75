"""Plans, quota windows, reservations, pricing and the usage ledger."""
