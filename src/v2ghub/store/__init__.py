"""The live aggregator's database: SQLAlchemy 2, SQLite by default, PostgreSQL by URL."""
