"""The degradation experiment itself, run on a tiny budget: its rows, not the shipped CSV."""

import pytest

from resnet_core import predict, theory


def test_degradation_runs_all_four_nets_and_reports_errors_in_order(lab, tmp_path):
    lines = []
    rows = theory.degradation(
        "mnist-sample",
        epochs=2,
        run_root=tmp_path,
        echo=lines.append,
        max_train_batches=4,
        max_test_images=64,
        batch_size=16,
    )
    assert [(r["model"], r["epoch"]) for r in rows] == [(m, e) for m in theory.DEGRADATION_MODELS for e in (1, 2)]
    assert all(0 <= r[k] <= 100 for r in rows for k in ("train_error", "test_error"))
    assert all(r["seconds"] > 0 for r in rows)
    # The errors are measured, not copied: each net's epoch-2 row is what its own last.pt scores on the
    # same 64 images (nets this young may tie with each other, so no row is compared with another's).
    for m in theory.DEGRADATION_MODELS:
        (row,) = [r for r in rows if r["model"] == m and r["epoch"] == 2]
        again = predict.evaluate_checkpoint(tmp_path / m / "last.pt", limit=64)["acc"]
        assert row["test_error"] == pytest.approx(100 * (1 - again), abs=1e-3), m
    assert [line.split(":")[0] for line in lines] == list(theory.DEGRADATION_MODELS)
    assert all((tmp_path / m / "best.pt").is_file() for m in theory.DEGRADATION_MODELS)
