"""The degradation experiment itself, run on a tiny budget: its rows, not the shipped CSV."""

from resnet_core import theory


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
    # Two epochs of four batches: the errors are measured, not copied (they differ between nets).
    assert len({r["test_error"] for r in rows if r["epoch"] == 2}) > 1
    assert [line.split(":")[0] for line in lines] == list(theory.DEGRADATION_MODELS)
    assert all((tmp_path / m / "best.pt").is_file() for m in theory.DEGRADATION_MODELS)
