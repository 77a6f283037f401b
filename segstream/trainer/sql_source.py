"""Read history from a SQL query instead of a file: DuckDB embedded, PostgreSQL (or any SQLAlchemy URL).

``--sql QUERY --db URL`` on every command that reads history. The query's result goes through the same
column mapping, presets and cleaning as a CSV or Parquet file (:func:`segstream.trainer.loading.canonical`),
so a table and a file with the same rows give the same events.

Databases:

- DuckDB, the embedded default: ``--db duckdb:///orders.duckdb`` (opened read-only) or no ``--db`` at all
  (an in-memory DuckDB, for a query over files in DuckDB's own SQL: ``SELECT * FROM 'orders.parquet'``).
  A bare path ending in ``.duckdb`` or ``.db`` is taken as a DuckDB file too.
- PostgreSQL through SQLAlchemy and psycopg 3: ``postgresql://user@host/db`` (the ``+psycopg`` driver is
  added when no driver is named). Other SQLAlchemy URLs are passed through as they are.

The URL may come from ``SEGSTREAM_DB_URL`` and the password from ``SEGSTREAM_DB_PASSWORD`` (a secret); a
URL is only ever shown with its password masked (:meth:`SqlSource.label`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segstream.trainer.errors import DataFileError

_DUCKDB = "duckdb://"


@dataclass(frozen=True)
class SqlSource:
    """A query and the database it runs on.

    Attributes:
        query: The SQL text.
        url: A SQLAlchemy-style URL (``duckdb:///file.duckdb``, ``postgresql://...``), or None for an
            in-memory DuckDB.
        password: Inserted into the URL when it names none (from ``SEGSTREAM_DB_PASSWORD``).
    """

    query: str
    url: str | None = None
    password: str | None = None

    @property
    def is_duckdb(self) -> bool:
        return self.url is None or self.url.startswith(_DUCKDB)

    def duckdb_path(self) -> str:
        """The DuckDB database file, or ``:memory:``."""
        if self.url is None:
            return ":memory:"
        path = self.url[len(_DUCKDB):]
        path = path[1:] if path.startswith("/") else path  # duckdb:///rel.duckdb and duckdb:////abs.duckdb
        return path or ":memory:"

    def database(self) -> str:
        """Where the query runs, with any password masked: safe for messages, logs and manifests."""
        if self.is_duckdb:
            return f"duckdb:///{self.duckdb_path()}" if self.url else "duckdb (in memory)"
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)  # type: ignore[arg-type]
        except Exception:  # an unparseable URL is reported by read_query; never echo it raw
            return "(unparseable database URL)"

    def label(self) -> str:
        """``query on <database>``: names the source in error messages and the bundle manifest."""
        return f"query on {self.database()}"

    def __str__(self) -> str:
        return f"{self.label()}: {' '.join(self.query.split())}"


def normalise_url(db: str | None) -> str | None:
    """``--db`` as given -> the URL :class:`SqlSource` takes (paths to DuckDB files become ``duckdb:///``)."""
    if db is None or db == "":
        return None
    if "://" not in db:
        if db.lower().endswith((".duckdb", ".db", ".ddb")) or db == ":memory:":
            return f"{_DUCKDB}/{db}"
        raise DataFileError(f"--db {db!r}: not a database URL (expected e.g. duckdb:///orders.duckdb or "
                            "postgresql://user@host/db)")  # fmt: skip
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_duckdb(source: SqlSource) -> pd.DataFrame:
    import duckdb

    path = source.duckdb_path()
    if path != ":memory:" and not Path(path).exists():
        raise DataFileError(f"{source.label()}: no such database file {path}")
    try:
        with duckdb.connect(path, read_only=path != ":memory:") as con:
            con.execute("SET enable_progress_bar = false")  # it would draw on our stdout
            return con.execute(source.query).df()
    except duckdb.Error as exc:
        raise DataFileError(f"{source.label()}: the query failed: {_first_line(exc)}") from None


def _engine_url(source: SqlSource):  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(source.url)  # type: ignore[arg-type]
    except (ArgumentError, ValueError):
        raise DataFileError(f"{source.label()}: not a valid database URL") from None
    if source.password and not url.password:
        url = url.set(password=source.password)
    return url


def _read_sqlalchemy(source: SqlSource) -> pd.DataFrame:
    import sqlalchemy
    from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError

    try:
        engine = sqlalchemy.create_engine(_engine_url(source))
    except NoSuchModuleError:
        raise DataFileError(f"{source.label()}: no SQLAlchemy driver for this URL") from None
    try:
        with engine.connect() as con:
            result = con.execute(sqlalchemy.text(source.query))
            if not result.returns_rows:
                raise DataFileError(f"{source.label()}: the statement returns no rows; give a SELECT")
            # coerce_float: a numeric column arrives as Decimal objects; as floats it is cleaned like a file's
            # numbers (rounded to cents).
            return pd.DataFrame.from_records(result.fetchall(), columns=list(result.keys()), coerce_float=True)
    except SQLAlchemyError as exc:
        # The driver's message names the cause (unknown column, refused password) but never the password.
        raise DataFileError(f"{source.label()}: the query failed: {_first_line(exc)}") from None
    finally:
        engine.dispose()


def read_query(source: SqlSource) -> pd.DataFrame:
    """Run the query and return its result, values as the database typed them, index = 1-based row.

    Raises:
        DataFileError: the database cannot be reached or opened, the query fails, or it returns no rows;
            the message names the database (password masked) and the database's own reason.
    """
    if not source.query.strip():
        raise DataFileError(f"{source.label()}: the query is empty")
    df = _read_duckdb(source) if source.is_duckdb else _read_sqlalchemy(source)
    if len(df) == 0:
        raise DataFileError(f"{source.label()}: the query returned no rows (columns: "
                            f"{', '.join(map(str, df.columns))})")  # fmt: skip
    df.columns = [str(c).strip() for c in df.columns]
    df.index = pd.RangeIndex(1, len(df) + 1, name="row")
    return df
