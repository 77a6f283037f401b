"""Malformed CSV and Parquet files: rejected with a message naming the file and the row/line and column.

Complements ``test_loading.py`` (missing files, empty files, unknown formats, missing columns) with broken
structure (ragged rows, unterminated quotes, truncated Parquet) and wrongly typed Parquet columns, for the
loader the trainer uses and for ``segstream replay``, which shares it and must fail before touching Kafka.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from segstream.cli.data import load_and_clean
from segstream.cli.main import cli
from segstream.trainer.errors import DataFileError

HEADER = "event_id,customer_id,timestamp,amount\n"
GOOD_ROW = "e1,C1,2025-01-01T00:00:00+00:00,1.5\n"
T1, T2 = "2025-01-01T00:00:00+00:00", "2025-01-02T00:00:00+00:00"


def _parquet(path: Path, **columns: list[object]) -> Path:
    base: dict[str, list[object]] = {"event_id": ["e1", "e2"], "customer_id": ["C1", "C2"], "timestamp": [T1, T2],
                                     "amount": [1.0, 2.0]}  # fmt: skip
    pq.write_table(pa.table({**base, **columns}), path)
    return path


def _broken_files(tmp: Path) -> list[tuple[Path, str]]:
    """(file, regex its rejection message must match)."""
    ragged = tmp / "ragged.csv"
    ragged.write_text(HEADER + GOOD_ROW + "e2,C1,2025-01-02T00:00:00+00:00,2.5,surplus\n")
    quote = tmp / "quote.csv"
    quote.write_text(HEADER + 'e1,C1,2025-01-01T00:00:00+00:00,"1.5\n' + GOOD_ROW)
    good = _parquet(tmp / "good.parquet")
    data = good.read_bytes()
    truncated = tmp / "truncated.parquet"
    truncated.write_bytes(data[: len(data) // 2] + data[-8:])  # keeps the magic footer, loses the body
    return [
        (ragged, r"ragged.csv: not a valid CSV file .*Expected 4 fields in line 3, saw 5"),
        (quote, r"quote.csv: not a valid CSV file .*EOF inside string starting at row 1"),
        (truncated, r"truncated.parquet: not a readable Parquet file"),
        (_parquet(tmp / "list.parquet", amount=[[1.0], [2.0]]),
         r"list.parquet: column 'amount': no value could be parsed as a number \(first bad value .* at row 1\)"),
        (_parquet(tmp / "bool.parquet", timestamp=[True, False]),
         r"bool.parquet: column 'timestamp': no value could be parsed as a timestamp \(first bad value "
         r"'True' at row 1\)"),
        (_parquet(tmp / "ids.parquet", customer_id=[None, None]),
         r"ids.parquet: column 'customer_id': every value is empty"),
    ]  # fmt: skip


def test_loader_rejects_broken_structure_and_wrong_types_naming_row_and_column(tmp_path: Path) -> None:
    for path, message in _broken_files(tmp_path):
        with pytest.raises(DataFileError, match=message):
            load_and_clean(str(path), None, None, echo=False)


def test_replay_rejects_the_same_files_before_contacting_kafka(tmp_path: Path) -> None:
    # Nothing listens on port 1: an error about the file (not about Kafka) proves the file is checked first.
    env = {"SEGSTREAM_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    for path, message in _broken_files(tmp_path):
        result = CliRunner().invoke(cli, ["replay", str(path)], env=env)
        assert result.exit_code == 2, (path, result.output)
        assert "Traceback" not in result.output and "Kafka" not in result.output
        # click wraps long lines; compare on one line.
        text = " ".join(result.output.split())
        assert path.name in text and "error:" in text, text


def test_trainer_side_report_names_row_and_column_of_dropped_rows(tmp_path: Path) -> None:
    path = tmp_path / "some-bad.csv"
    path.write_text(HEADER + GOOD_ROW + "e2,C1,2025-01-02T00:00:00+00:00,abc\ne3,C2,yesterday,3\n")
    events, report = load_and_clean(str(path), None, None, echo=False)
    assert len(events) == 1
    assert report.first_bad == {"invalid_amount": "row 2: 'abc'", "invalid_timestamp": "row 3: 'yesterday'"}
    assert "first at row 2: 'abc'" in report.render()


def test_replay_says_which_rows_it_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segstream.streams import replay as replay_module

    sent: list[object] = []
    # Unit test of the command's output only: the producing step is replaced (no broker here).
    monkeypatch.setattr(replay_module, "replay", lambda records, *a, **k: sent.append(records)
                        or replay_module.ReplayResult(len(records), 0.1))  # fmt: skip
    path = tmp_path / "some-bad.csv"
    path.write_text(HEADER + GOOD_ROW + "e2,C1,2025-01-02T00:00:00+00:00,abc\n")
    result = CliRunner().invoke(cli, ["replay", str(path)])
    assert result.exit_code == 0 and len(sent[0]) == 1  # type: ignore[arg-type]
    assert "row 2" in result.output and "amount" in result.output
