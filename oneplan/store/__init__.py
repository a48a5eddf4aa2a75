"""Persistence (SQLite by default, PostgreSQL for several replicas) and the quota counter backends."""
