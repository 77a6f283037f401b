"""History from a real PostgreSQL server: train, score and replay from a query, as from the file.

The server is a real ``postgres`` started by the test session (tests/integration/postgres_fixture.py);
the rows are the CDNOW sample (PyPI ``Lifetimes``) loaded into an ``orders`` table with the types a shop's
database would use (``timestamptz``, ``numeric(12,2)``). The password reaches the command only through
``SEGSTREAM_DB_PASSWORD`` and must not appear in any output, log or manifest.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import promote
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.loading import load_transactions
from segstream.trainer.pipeline import fingerprint
from tests.integration.parity_support import replay_and_compare

pytestmark = pytest.mark.integration

QUERY = "SELECT event_id, customer_id, timestamp, amount, quantity, category FROM orders"


@pytest.fixture(scope="module")
def orders(postgres_server, public_data):
    """The CDNOW sample as a typed ``orders`` table; returns (URL without password, password, clean events)."""
    data = public_data("cdnow-sample")
    events, _ = clean_transactions(load_transactions(data), str(data))
    engine = sqlalchemy.create_engine(postgres_server.url)
    frame = pd.read_csv(data, dtype={"customer_id": str, "event_id": str})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    with engine.begin() as con:
        con.execute(sqlalchemy.text("DROP TABLE IF EXISTS orders"))
        con.execute(sqlalchemy.text(
            "CREATE TABLE orders (event_id text PRIMARY KEY, customer_id text NOT NULL, timestamp timestamptz "
            "NOT NULL, amount numeric(12,2) NOT NULL, quantity integer, category text)"))  # fmt: skip
        frame.to_sql("orders", con, if_exists="append", index=False)
    engine.dispose()
    url = sqlalchemy.engine.make_url(postgres_server.url)
    return url._replace(password=None).render_as_string(hide_password=False), url.password, events, data


def _env(password: str) -> dict[str, str]:
    return {"SEGSTREAM_DB_PASSWORD": password}


def test_train_and_score_from_a_postgres_query_equal_the_file(orders, tmp_path):
    url, password, events, data = orders
    runner = CliRunner()
    bundle = tmp_path / "from-sql"
    trained = runner.invoke(cli, ["train", "--sql", QUERY, "--db", url, "--out", str(bundle), "--k", "4",
                                  "--seed", "1"], env=_env(password))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    # The bundle was trained on exactly the file's clean events.
    assert manifest["data_fingerprint"] == fingerprint(events)
    assert manifest["info"]["source"].startswith("query on postgresql+psycopg://segstream@127.0.0.1")
    assert password not in trained.output and password not in (bundle / "manifest.json").read_text()

    scored_sql, scored_file = tmp_path / "sql.csv", tmp_path / "file.csv"
    by_sql = runner.invoke(cli, ["score", "--bundle", str(bundle), "--sql", QUERY, "--db", url, "--out",
                                 str(scored_sql)], env=_env(password))  # fmt: skip
    assert by_sql.exit_code == 0, by_sql.output
    by_file = runner.invoke(cli, ["score", "--bundle", str(bundle), "--data", str(data), "--out", str(scored_file)])
    assert by_file.exit_code == 0, by_file.output
    pd.testing.assert_frame_equal(pd.read_csv(scored_sql), pd.read_csv(scored_file))


def test_a_query_error_and_a_wrong_password_are_one_message(orders, tmp_path):
    url, password, _, _ = orders
    runner = CliRunner()
    missing = runner.invoke(cli, ["clean", "--sql", "SELECT customer_id, amount FROM orders", "--db", url,
                                  "--out", str(tmp_path / "o.csv")], env=_env(password))  # fmt: skip
    assert missing.exit_code == 2 and "required column 'timestamp' is missing" in missing.output
    unknown = runner.invoke(cli, ["clean", "--sql", "SELECT * FROM no_such_table", "--db", url, "--out",
                                  str(tmp_path / "o.csv")], env=_env(password))  # fmt: skip
    assert unknown.exit_code == 2 and 'relation "no_such_table" does not exist' in unknown.output
    refused = runner.invoke(cli, ["clean", "--sql", QUERY, "--db", url, "--out", str(tmp_path / "o.csv")],
                            env=_env("not-the-password"))  # fmt: skip
    assert refused.exit_code == 2 and "password authentication failed" in refused.output
    for result in (missing, unknown, refused):
        assert "Traceback" not in result.output and password not in result.output


def test_replay_from_a_postgres_query_gives_exact_parity(orders, embedded_stack, redis_client, tmp_path):
    url, password, events, _ = orders
    root = tmp_path / "models"
    trained = CliRunner().invoke(cli, ["train", "--sql", QUERY, "--db", url, "--out", str(root / "b1"), "--k", "4"],
                                 env=_env(password))  # fmt: skip
    assert trained.exit_code == 0, trained.output
    promote(root / "b1", root)
    result = replay_and_compare(embedded_stack, redis_client, tmp_path, ["--sql", QUERY, "--db", url], events, root,
                                extra_env=_env(password))  # fmt: skip
    assert len(result["features"]) == events["customer_id"].nunique()
