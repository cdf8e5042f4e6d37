"""Durable state: Redis (client and embedded server), the Parquet archive and history files."""
