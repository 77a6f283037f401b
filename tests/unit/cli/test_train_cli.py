"""generate -> train -> report -> score -> promote through the real CLI, on a small history."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import load_bundle, resolve_current
from segstream.models.features import FEATURE_NAMES, FEATURE_SPEC
from segstream.models.serving import SERVING


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    runner = CliRunner()
    history = root / "history.csv"
    result = runner.invoke(
        cli, ["generate", "--customers", "400", "--days", "420", "--seed", "5", "--out", str(history)]
    )
    assert result.exit_code == 0, result.output
    bundle = root / "models" / "b1"
    result = runner.invoke(cli, ["train", "--data", str(history), "--out", str(bundle), "--horizon", "14"])
    assert result.exit_code == 0, result.output
    return root, history, bundle, result.output


def test_train_prints_stage_timings_and_summary(trained):
    _, _, _, output = trained
    for stage in ("load + clean", "features", "segmentation", "classifier", "purchase", "forecast", "bundle"):
        assert stage in output
    assert "silhouette" in output and "accuracy" in output


def test_manifest_has_the_stable_metric_keys(trained):
    _, _, bundle, _ = trained
    manifest = json.loads((bundle / "manifest.json").read_text())
    metrics = manifest["metrics"]
    seg = metrics["segmentation"]
    assert 2 <= seg["k"] <= 8 and -1 <= seg["silhouette"] <= 1
    assert set(seg["inertia_by_k"]) and set(seg["silhouette_by_k"])
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert 0 <= metrics["classifier"][key] <= 1
    assert {"baseline", "linear_regression"} <= set(metrics["purchase"])
    for scores in metrics["purchase"].values():
        assert scores["rmse"] >= scores["mae"] >= 0
    for model in ("prophet", "random_forest", "seasonal_naive"):
        assert metrics["forecast"][model]["mae"] >= 0 and metrics["forecast"][model]["rmse"] >= 0
    assert manifest["feature_spec"]["hash"] == FEATURE_SPEC.hash
    assert manifest["data_fingerprint"]["rows"] > 0 and len(manifest["data_fingerprint"]["sha256"]) == 64
    assert set(manifest["libraries"]) >= {"numpy", "pandas", "scikit-learn"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["artifacts"].values())


def test_serving_artifact_loads_alone_and_scores(trained):
    _, _, bundle, _ = trained
    loaded = load_bundle(bundle, expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING])
    assert list(loaded.artifacts) == [SERVING]
    serving = loaded.artifact(SERVING)
    assert abs(sum(serving.training_mix.values()) - 1) < 1e-9
    assert set(serving.names) == set(serving.training_mix)


def test_report_writes_html_with_plots(trained):
    root, _, bundle, _ = trained
    out = root / "report.html"
    result = CliRunner().invoke(cli, ["report", str(bundle), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for title in ("Elbow", "Silhouette", "PCA", "Segment profiles", "confusion matrix", "Daily sales and forecast"):
        assert title in page
    assert "model summary" in result.output


def test_score_matches_the_bundles_customer_table(trained):
    root, history, bundle, _ = trained
    out = root / "scores.parquet"
    result = CliRunner().invoke(cli, ["score", "--bundle", str(bundle), "--data", str(history), "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out).set_index("customer_id")
    assert set(FEATURE_NAMES) <= set(scores.columns)
    assert {"segment", "segment_name", "predicted_spend_90d"} <= set(scores.columns)
    training = pd.read_parquet(bundle / "customers.parquet").set_index("customer_id")
    # Same file, same features code, same scorer: batch scoring reproduces training's assignments.
    assert (scores.loc[training.index, "segment"] == training["segment"]).all()


def test_promote_and_retrain_keeps_segment_ids(trained):
    root, history, bundle, _ = trained
    runner = CliRunner()
    # promote targets the worker's root (SEGSTREAM_MODEL_ROOT); point it at the bundle's parent.
    assert runner.invoke(cli, ["promote", str(bundle)], env={"SEGSTREAM_MODEL_ROOT": str(bundle.parent)}).exit_code == 0
    assert resolve_current(bundle.parent) == bundle.resolve()
    second = root / "models" / "b2"
    result = runner.invoke(
        cli, ["train", "--data", str(history), "--out", str(second), "--previous", str(bundle), "--seed", "9"]
    )
    assert result.exit_code == 0, result.output
    first_names = json.loads((bundle / "manifest.json").read_text())["info"]["segment_names"]
    second_names = json.loads((second / "manifest.json").read_text())["info"]["segment_names"]
    shared = set(first_names) & set(second_names)
    assert shared and all(first_names[s] == second_names[s] for s in shared)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("event_id,customer_id,timestamp\ne1,C1,2025-01-01T00:00:00+00:00\n", "amount"),
        ("event_id,customer_id,timestamp,amount\ne1,C1,2025-01-01T00:00:00+00:00,abc\n", "amount"),
    ],
)
def test_bad_file_gets_a_clear_message_and_exit_2(tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    result = CliRunner().invoke(cli, ["train", "--data", str(bad), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert message in result.output.lower() and "bad.csv" in result.output


def test_unknown_format_is_refused(tmp_path):
    bad = tmp_path / "history.xlsx"
    bad.write_bytes(b"PK\x03\x04")
    result = CliRunner().invoke(cli, ["train", "--data", str(bad), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "history.xlsx" in result.output


def test_every_command_has_help():
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for name, command in cli.commands.items():
        assert runner.invoke(cli, [name, "--help"]).exit_code == 0, name
        assert command.help or command.short_help, name
