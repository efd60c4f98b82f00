"""Where the real services of the test machine are, and whether they answer."""

from __future__ import annotations

import os

PG_URI = os.environ.get("STOCKML_TEST_PG_URI", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_unreachable(uri: str = PG_URI) -> str | None:
    """None when PostgreSQL answers at ``uri``, else why not (the skip reason)."""
    try:
        import psycopg

        with psycopg.connect(uri, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL not reachable at {uri}: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None
