"""Customer tables: loading errors, choosing and fitting attributes, and training with them joined."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.attributes import CATEGORICAL, NUMERIC, OTHER
from segstream.models.bundle import load_bundle, read_manifest
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC, batch_features
from segstream.models.scoring import SegmentScorer
from segstream.models.serving import SERVING
from segstream.trainer.attributes import (
    encode_customers,
    fit_attribute_spec,
    load_customers,
    parse_attribute_names,
)
from segstream.trainer.cleaning import clean_transactions
from segstream.trainer.errors import DataFileError, TrainerError
from segstream.trainer.generate import generate_transactions
from segstream.trainer.pipeline import TrainOptions, train_bundle
from segstream.trainer.public_data import DATASETS
from segstream.trainer.scoring import score_customers
from segstream.trainer.segmentation import CLUSTER_FEATURES, fit_segmentation


def _write(tmp_path, text: str, name: str = "customers.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("id,age\n1,30\n", r"customers\.csv: required column customer_id is missing \(columns: id, age\)"),
        ("customer_id,age\na,30\nb,31\na,32\n", r"customers\.csv: column customer_id: customer id 'a' .*rows 1 and 3"),
        ("customer_id,age\na,30\n,31\n", r"customers\.csv: column customer_id, row 2: empty customer id"),
        ("customer_id,age\n", r"customers\.csv: no data rows"),
    ],
)
def test_bad_tables_are_refused_naming_file_column_and_row(tmp_path, text, match):
    with pytest.raises(DataFileError, match=match):
        load_customers(_write(tmp_path, text))


def test_bad_attribute_choices_are_refused(tmp_path):
    table = load_customers(_write(tmp_path, "Customer ID,age,income,monetary\na,30,1,5\nb,31,2,6\n"))
    with pytest.raises(DataFileError, match=r"customers\.csv: --attributes column 'salary' is not .*age, income"):
        fit_attribute_spec(table, ["age", "salary"])
    with pytest.raises(DataFileError, match="twice"):
        fit_attribute_spec(table, ["age", "age"])
    with pytest.raises(DataFileError, match="no attributes chosen"):
        fit_attribute_spec(table, [])
    with pytest.raises(DataFileError, match="name of a behaviour feature"):
        fit_attribute_spec(table, ["monetary"], reserved=FEATURE_NAMES)
    lots = "customer_id,income\n" + "".join(f"c{i},{i}\n" for i in range(30)) + "c30,n/a\n"
    typo = load_customers(_write(tmp_path, lots, "typo.csv"))
    with pytest.raises(DataFileError, match=r"typo\.csv: column 'income', row 31: 'n/a' is not a number"):
        fit_attribute_spec(typo, ["income"])


def test_cli_maps_table_errors_to_exit_code_2(tmp_path):
    path = _write(tmp_path, "customer_id,age\na,30\na,31\n")
    result = CliRunner().invoke(cli, ["train", "--customers", str(path), "--attributes", "age",
                                      "--out", str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "appears more than once" in result.output and "Traceback" not in result.output
    ok = _write(tmp_path, "customer_id,age\na,30\nb,31\n", "ok.csv")
    result = CliRunner().invoke(cli, ["train", "--customers", str(ok), "--attributes", "age,height",
                                      "--out", str(tmp_path / "b")])  # fmt: skip
    assert result.exit_code == 2 and "'height' is not an attribute column" in result.output
    result = CliRunner().invoke(cli, ["train", "--customers", str(ok), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--attributes" in result.output


def test_kinds_medians_levels_and_the_cap():
    rows = 40
    frame = pd.DataFrame({
        "customer_id": range(rows),
        "income": [str(i) if i % 10 else "" for i in range(rows)],  # blanks: missing, not a typo
        "city": [f"c{i % 13}" for i in range(rows)],
        "flag": [i % 2 == 0 for i in range(rows)],
        "other_col": ["other" if i < 30 else "x" for i in range(rows)],
    })  # fmt: skip
    table = load_customers(frame)
    spec = fit_attribute_spec(table, ["income", "city", "flag", "other_col"], max_levels=5)
    income, city, flag, other_col = spec.attributes
    assert income.kind == NUMERIC and income.fill == float(np.median([i for i in range(rows) if i % 10]))
    assert city.kind == CATEGORICAL and len(city.levels) == 5
    assert city.levels == ("c0", "c1", "c10", "c11", "c12")  # 4 each; ties broken by the level text
    assert flag.kind == CATEGORICAL and set(flag.levels) == {"True", "False"}
    assert other_col.levels == ("x",)  # a literal "other" level is the other column
    encoded = encode_customers(spec, table, pd.Index(["0", "1", "nobody"]))
    assert encoded.coverage == {"customers": 3, "in_table": 2, "missing_from_table": 1, "table_only": 38}
    nobody = encoded.frame.loc["nobody"]
    assert nobody["income"] == income.fill and nobody[f"city={OTHER}"] == 1.0 and nobody[f"flag={OTHER}"] == 1.0
    assert encoded.frame.loc["0", "income"] == income.fill  # blank cell
    assert encoded.frame.loc["1", "city=c1"] == 1.0


def test_parse_attribute_names():
    assert parse_attribute_names(" age, income,,share ") == ("age", "income", "share")
    assert parse_attribute_names(None) == ()


def test_fetch_data_choices_are_the_data_sets():
    from segstream.cli.data import fetch_data

    choices = next(p for p in fetch_data.params if p.name == "name").type.choices
    assert list(choices) == list(DATASETS)


@pytest.fixture(scope="module")
def history():
    raw = generate_transactions(300, 400, 7, end=dt.date(2025, 12, 31), dirty_fraction=0.0)
    events, _ = clean_transactions(raw, source="generated")
    ids = sorted(events["customer_id"].astype(str).unique())
    rng = np.random.default_rng(1)
    listed = ids[:270] + ["only-in-table"]
    table = pd.DataFrame({
        "customer_id": listed,
        "age": rng.normal(40, 12, len(listed)).round(),
        "plan": rng.choice(["basic", "plus", "pro"], len(listed), p=[0.6, 0.3, 0.1]),
    })  # fmt: skip
    return events, load_customers(table)


def test_behaviour_only_training_is_unchanged(history, tmp_path):
    events, _ = history
    features = batch_features(events)
    default = fit_segmentation(features, k=4, seed=0)
    explicit = fit_segmentation(features, k=4, seed=0, input_names=FEATURE_NAMES, cluster_features=CLUSTER_FEATURES,
                                scale_groups=(), order_by="monetary")  # fmt: skip
    assert type(default.scorer) is SegmentScorer
    assert default.labels.equals(explicit.labels) and default.names == explicit.names
    result = train_bundle(events, tmp_path / "b", options=TrainOptions(k=4, forecast_horizon_days=14))
    manifest = read_manifest(result.bundle_dir)
    assert manifest.feature_spec == FEATURE_SPEC.to_dict()
    assert "attributes" not in manifest.info and "attributes" not in result.metrics
    serving = load_bundle(result.bundle_dir, expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING]).artifact(SERVING)
    assert serving.attribute_spec is None and type(serving.segments) is SegmentScorer


def test_attributes_joined_to_behaviour(history, tmp_path):
    events, table = history
    options = TrainOptions(k=4, forecast_horizon_days=14, attributes=("age", "plan"))
    result = train_bundle(events, tmp_path / "joined", options=options, customers=table)
    manifest = read_manifest(result.bundle_dir)
    spec = manifest.feature_spec
    assert spec["hash"] != FEATURE_SPEC.hash
    assert [a["name"] for a in spec["attributes"]["attributes"]] == ["age", "plan"]
    coverage = manifest.info["attributes"]["coverage"]
    n = events["customer_id"].nunique()
    assert coverage == {"customers": n, "in_table": 270, "missing_from_table": n - 270, "table_only": 1}
    clustered = manifest.metrics["segmentation"]["cluster_features"]
    assert clustered[: len(CLUSTER_FEATURES)] == list(CLUSTER_FEATURES)
    assert "age" in clustered and "plan=pro" in clustered
    assert "purchase" in manifest.artifacts and "skipped" not in manifest.metrics["purchase"]
    assert all("; median age" in d for d in manifest.info["segment_descriptions"].values())
    # A tool that reads behaviour-only bundles refuses it with the clear message, before unpickling anything.
    with pytest.raises(Exception, match="models read the attribute.s. age, plan; this tool reads only"):
        load_bundle(result.bundle_dir, expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING])
    scored = score_customers(result.bundle_dir, events, customers=table).set_index("customer_id")
    trained = pd.read_parquet(result.bundle_dir / "customers.parquet").set_index("customer_id")
    assert scored["segment"].reindex(trained.index).equals(trained["segment"])
    assert np.allclose(scored["predicted_spend_90d"].reindex(trained.index), trained["predicted_spend_90d"])
    with pytest.raises(TrainerError, match="needs the customer attributes age, plan"):
        score_customers(result.bundle_dir, events)


def test_attribute_training_refusals(history, tmp_path):
    events, table = history
    with pytest.raises(TrainerError, match="needs a customer table"):
        train_bundle(events, tmp_path / "x", options=TrainOptions(attributes=("age",)))
    with pytest.raises(TrainerError, match="RFM map"):
        train_bundle(events, tmp_path / "x", options=TrainOptions(attributes=("age",), segmenter="rfm"),
                     customers=table)  # fmt: skip
    with pytest.raises(TrainerError, match="nothing to train on"):
        train_bundle(None, tmp_path / "x")
