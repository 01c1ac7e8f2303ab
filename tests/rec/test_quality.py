"""The quality benchmark runner (tiny synthetic data; the real run is in docs)."""

from __future__ import annotations

import pytest

from secagg_rec.rec.quality import Candidate, format_summary, main, run_quality_benchmark
from secagg_rec.rec.synthetic import make_synthetic

QUICK = dict(epochs=3, batch_size=512, lr=5e-3, patience=None)


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(n_users=120, n_items=200, seed=2)


def test_runs_every_model_and_seed_and_summarizes(dataset):
    seen = []
    result = run_quality_benchmark(
        dataset,
        models=("random", "popularity", "mf"),
        seeds=(0, 1),
        candidates={"mf": (Candidate(QUICK, {"factors": 8}),)},
        on_run=seen.append,
    )
    assert [(r["model"], r["seed"]) for r in result["runs"]] == [
        ("random", 0),
        ("popularity", 0),
        ("mf", 0),
        ("random", 1),
        ("popularity", 1),
        ("mf", 1),
    ]
    assert seen == result["runs"]
    mf = result["summary"]["mf"]
    hrs = [r["test"]["HR@10"] for r in result["runs"] if r["model"] == "mf"]
    assert mf["HR@10"] == pytest.approx(sum(hrs) / 2)
    assert mf["reference"] == {}  # references are for MovieLens 100K only
    assert 0.0 <= mf["full_Recall@10"] <= 1.0
    assert "HR@10" in format_summary(result)


def test_hyperparameters_are_chosen_on_validation(dataset):
    hopeless = Candidate({**QUICK, "lr": 1e-7}, {"factors": 8})
    good = Candidate(QUICK, {"factors": 8})
    result = run_quality_benchmark(
        dataset,
        models=("mf",),
        seeds=(0,),
        candidates={"mf": (hopeless, good)},
        full_ranking=False,
    )
    run = result["runs"][0]
    assert run["candidate"]["index"] == 1
    assert "full" not in run


def test_bad_arguments(dataset):
    with pytest.raises(ValueError, match="unknown models"):
        run_quality_benchmark(dataset, models=("svd",))
    with pytest.raises(ValueError, match="seeds"):
        run_quality_benchmark(dataset, seeds=())
    with pytest.raises(ValueError, match="candidates"):
        run_quality_benchmark(dataset, models=("mf",), candidates={})


def test_command_line(capsys):
    assert main(["--models", "random", "popularity", "--seeds", "0", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"popularity"' in out and '"HR@10"' in out
