"""Persistence: SQLModel tables, Alembic migrations, and the repository the daemon uses."""
