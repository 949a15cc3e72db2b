"""`ganplug eval --real DATASET` uses the dataset's held-out split when prep made one."""

from __future__ import annotations

from ganplug.data import PrepOptions, prepare_dataset
from ganplug.eval import evaluate


def test_real_dataset_with_holdout_uses_the_holdout(tmp_path, shapes_dir):
    data = tmp_path / "data"
    res = prepare_dataset(shapes_dir, data, PrepOptions(size=32, holdout=0.25, dedup=False, seed=0))
    n_train, n_hold = res.counts["train"], res.counts["holdout"]
    assert n_hold > 0 and n_train > n_hold
    out = evaluate(shapes_dir, data, metrics="swd")
    assert out["real"]["count"] == n_hold
    assert "holdout" in " ".join(out["real"].get("notes", []))


def test_evaluate_stays_the_function_after_the_cli_imported_its_module():
    import importlib

    importlib.import_module("ganplug.eval.pipeline")
    from ganplug.eval import evaluate as again

    assert callable(again) and again.__name__ == "evaluate"
