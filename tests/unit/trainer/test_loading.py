"""Loading CSV/Parquet transaction files: formats, mapping, event id derivation, the online-retail preset."""

from __future__ import annotations

import pandas as pd
import pytest

from segstream.models.errors import SegstreamError
from segstream.trainer.errors import DataFileError, TrainerError
from segstream.trainer.loading import derive_event_ids, load_transactions, write_table

RETAIL = """\
Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,17850,United Kingdom
C536379,D,Discount,-1,12/1/2010 9:41,27.50,14527,United Kingdom
536380,22961,JAM MAKING SET PRINTED,24,12/1/2010 9:41,abc,17809,United Kingdom
536381,22139,RETROSPOT TEA SET,1,12/13/2010 9:41,4.95,,France
"""


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_error_hierarchy():
    assert issubclass(DataFileError, TrainerError)
    assert issubclass(TrainerError, SegstreamError)


def test_csv_keeps_raw_strings_and_row_numbers(tmp_path):
    path = write(tmp_path, "t.csv", "event_id,customer_id,timestamp,amount,note\n"
                 "e1,C1,2025-01-01T00:00:00+00:00,abc,x\ne2,,1735689600000,NaN,\n")
    df = load_transactions(path)
    assert list(df.columns) == ["event_id", "customer_id", "timestamp", "amount", "note"]
    assert df.index.name == "row" and list(df.index) == [1, 2]
    assert df.loc[1, "amount"] == "abc"
    assert df.loc[2, "amount"] == "NaN"  # kept as text for cleaning to judge
    assert pd.isna(df.loc[2, "customer_id"])


def test_parquet_and_csv_give_the_same_rows(tmp_path):
    from segstream.trainer.generate import generate_transactions

    raw = generate_transactions(30, 20, seed=1)
    write_table(raw, tmp_path / "g.parquet")
    write_table(raw, tmp_path / "g.csv")
    a = load_transactions(tmp_path / "g.parquet")
    b = load_transactions(tmp_path / "g.csv")
    assert len(a) == len(b) == len(raw)
    assert list(a["event_id"]) == list(b["event_id"])
    assert list(a["amount"]) == list(b["amount"])


def test_mapping_renames_and_keeps_extras(tmp_path):
    path = write(tmp_path, "m.csv", "id,kunde,zeit,betrag,filiale\n1,K1,2025-01-01T10:00:00+01:00,9.99,F1\n")
    df = load_transactions(path, mapping={"event_id": "id", "customer_id": "kunde", "timestamp": "zeit",
                                          "amount": "betrag", "store_id": "filiale"})
    assert list(df.columns) == ["event_id", "customer_id", "timestamp", "amount", "store_id"]
    assert df.iloc[0].to_dict() == {"event_id": "1", "customer_id": "K1",
                                    "timestamp": "2025-01-01T10:00:00+01:00", "amount": "9.99",
                                    "store_id": "F1"}


def test_mapping_over_an_existing_canonical_column_keeps_it_aside(tmp_path):
    path = write(tmp_path, "m.csv", "event_id,customer_id,timestamp,amount,net\ne,C,1,10.00,8.40\n")
    df = load_transactions(path, mapping={"amount": "net"})
    assert df.loc[1, "amount"] == "8.40"
    assert df.loc[1, "amount_unmapped"] == "10.00"


def test_differently_spelled_columns_are_found(tmp_path):
    path = write(tmp_path, "s.csv", "Event ID,Customer ID,Timestamp,AMOUNT\ne,C,1,2\n")
    assert list(load_transactions(path).columns) == ["event_id", "customer_id", "timestamp", "amount"]


def test_bad_mapping(tmp_path):
    path = write(tmp_path, "m.csv", "a,b,c,d\n1,2,3,4\n")
    with pytest.raises(DataFileError, match=r"'price' is not a column name segstream knows"):
        load_transactions(path, mapping={"price": "a"})
    with pytest.raises(DataFileError, match=r"column 'zz' given in --map amount=zz is not in the file"):
        load_transactions(path, mapping={"amount": "zz"})


def test_derived_event_ids_depend_only_on_row_content(tmp_path):
    body = "C1,2025-01-01T00:00:00+00:00,5.00\nC2,2025-01-02T00:00:00+00:00,6.00\n"
    a = load_transactions(write(tmp_path, "a.csv", "customer_id,timestamp,amount\n" + body
                                + "C1,2025-01-01T00:00:00+00:00,5.00\n"))
    # Same rows, other order of rows and of columns: same ids.
    b = load_transactions(write(tmp_path, "b.csv", "amount,customer_id,timestamp\n"
                                "6.00,C2,2025-01-02T00:00:00+00:00\n5.00,C1,2025-01-01T00:00:00+00:00\n"))
    assert a["event_id"].str.fullmatch(r"h[0-9a-f]{20}").all()
    assert a.loc[1, "event_id"] == a.loc[3, "event_id"] == b.loc[2, "event_id"]  # exact duplicates collapse
    assert a.loc[2, "event_id"] == b.loc[1, "event_id"]
    assert a.loc[1, "event_id"] != a.loc[2, "event_id"]
    again = derive_event_ids(a.drop(columns="event_id"))
    assert list(again) == list(a["event_id"])


def test_online_retail_preset_aggregates_invoices(tmp_path):
    df = load_transactions(write(tmp_path, "r.csv", RETAIL), preset="online-retail")
    assert list(df["event_id"]) == ["536365", "536366", "C536379", "536380", "536381"]
    assert list(df.index) == [1, 3, 4, 5, 6]  # the invoice's first line
    first = df.iloc[0]
    assert first["amount"] == pytest.approx(6 * 2.55 + 6 * 3.39)
    assert first["quantity"] == 12
    assert first["customer_id"] == "17850"  # "17850.0" from a float-typed export
    assert first["timestamp"] == "2010-12-01T08:26:00+00:00"
    assert first["category"] == "WHITE METAL LANTERN"  # the largest line
    assert first["country"] == "United Kingdom" and first["line_count"] == 2
    assert df.iloc[1]["timestamp"] == "2010-12-01T08:28:00+00:00"
    assert df.iloc[2]["amount"] == pytest.approx(-27.5) and df.iloc[2]["quantity"] == -1
    assert df.iloc[3]["amount"] == "abc"  # unparseable price stays visible to cleaning
    assert pd.isna(df.iloc[4]["customer_id"]) and df.iloc[4]["country"] == "France"


def test_online_retail_old_spelling_and_negative_quantity_cancellation(tmp_path):
    text = ("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
            "1,A,x,2,2011-01-05 10:00:00,3.0,7,UK\n"
            "2,A,x,-2,13/1/2011 10:00,3.0,7,UK\n")
    df = load_transactions(write(tmp_path, "r.csv", text), preset="online-retail")
    assert list(df["amount"]) == [6.0, -6.0]
    assert list(df["quantity"]) == [2, -2]
    assert df.iloc[1]["timestamp"] == "2011-01-13T10:00:00+00:00"  # day-first fallback


def test_online_retail_missing_column(tmp_path):
    path = write(tmp_path, "r.csv", "Invoice,Quantity,InvoiceDate,Customer ID\n1,2,2011-01-05,7\n")
    with pytest.raises(DataFileError, match=r"r.csv: required column 'Price' or 'UnitPrice' is missing"):
        load_transactions(path, preset="online-retail")


def test_online_retail_mapping_by_field(tmp_path):
    path = write(tmp_path, "r.csv", "Beleg,Menge,Datum,Preis,Kunde\n1,2,2011-01-05 10:00,3.5,7\n")
    df = load_transactions(path, preset="online-retail", mapping={
        "invoice": "Beleg", "quantity": "Menge", "invoice_date": "Datum", "price": "Preis",
        "customer_id": "Kunde"})
    assert df.iloc[0]["amount"] == 7.0


def test_latin1_file(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("event_id,customer_id,timestamp,amount,category\ne,C,1,2,caf\xe9\n".encode("latin-1"))
    assert load_transactions(path).loc[1, "category"] == "caf\xe9"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("none.csv", None, r"none.csv: no such file"),
    ("empty.csv", "", r"empty.csv: the file is empty"),
    ("header.csv", "event_id,customer_id,timestamp,amount\n", r"header.csv: no data rows"),
    ("t.xlsx", "x", r"t.xlsx: unknown format '.xlsx'"),
    ("bad.parquet", "this is not parquet", r"bad.parquet: not a readable Parquet file"),
    ("nocol.csv", "event_id,customer_id,timestamp\n1,2,3\n",
     r"nocol.csv: required column 'amount' is missing"),
])
def test_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataFileError, match=message):
        load_transactions(path)


def test_unknown_preset_and_directory(tmp_path):
    with pytest.raises(DataFileError, match="unknown preset 'sap'"):
        load_transactions(tmp_path / "x.csv", preset="sap")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataFileError, match="is a directory"):
        load_transactions(tmp_path / "d.csv")


def test_write_table_csv_timestamps_and_bad_extension(tmp_path):
    df = pd.DataFrame({"timestamp": pd.to_datetime(["2025-03-01 10:15:00"]).tz_localize("UTC"), "x": [1]})
    write_table(df, tmp_path / "o.csv")
    assert (tmp_path / "o.csv").read_text().splitlines()[1] == "2025-03-01T10:15:00+00:00,1"
    with pytest.raises(DataFileError, match=r"o.json: unknown format"):
        write_table(df, tmp_path / "o.json")
    with pytest.raises(DataFileError, match="cannot write"):
        write_table(df, tmp_path / "missing-dir" / "o.csv")
