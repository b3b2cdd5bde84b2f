"""Data layer: PostgreSQL store, market-data sources, sync."""
