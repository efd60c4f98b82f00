"""Where the real services of the test machine are, and whether they answer."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

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


PG_SQLALCHEMY_URI = PG_URI.replace("postgresql://", "postgresql+psycopg://")


@contextlib.contextmanager
def throwaway_pg_schema(prefix: str) -> Iterator[tuple[object, str]]:
    """(engine, schema) for a fresh schema in the test Postgres, dropped with everything in it after.

    Skips the calling test with the reason when the server does not answer.
    """
    import pytest
    import sqlalchemy as sa

    reason = postgres_unreachable()
    if reason:
        pytest.skip(reason)
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(PG_SQLALCHEMY_URI)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield engine, schema
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def search_path_uri(schema: str) -> str:
    """The test Postgres URI with ``schema`` as search_path (for libraries that take only a URL)."""
    return f"{PG_SQLALCHEMY_URI}{'&' if '?' in PG_SQLALCHEMY_URI else '?'}options=-csearch_path%3D{schema}"


def weekly_demand_through(hook, schema: str | None, cutoff: str):
    """(weekly demand, validation report) read through ``hook``, canonical dtypes and order,
    so demand from different backends compares with assert_frame_equal."""
    import pandas as pd

    from training.data.source import SourceQueries, read_source
    from training.data.validate import validate
    from training.data.weekly import to_weekly_demand

    products, movements = read_source(hook, SourceQueries.default(schema))
    result = validate(products, movements, today=pd.Timestamp(cutoff))
    return canonical_demand(to_weekly_demand(result.movements, pd.Timestamp(cutoff))), result.report


def canonical_demand(demand):
    """Weekly demand with one set of dtypes and row order, so backends compare with assert_frame_equal."""
    import pandas as pd

    demand = demand.assign(
        unique_id=demand["unique_id"].astype(str),
        ds=pd.to_datetime(demand["ds"]).astype("datetime64[ns]"),
        y=demand["y"].astype("float64"),
    )
    return demand.sort_values(["unique_id", "ds"]).reset_index(drop=True)
