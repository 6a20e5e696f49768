"""Win probabilities of open deals: point-in-time features, no leakage, metrics, fallback."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset
from pandas.testing import assert_frame_equal, assert_series_equal

from pipeline_lib import demo, scoring
from pipeline_lib.dataset import Dataset
from pipeline_lib.errors import InsufficientDataError

AS_OF = pd.Timestamp("2025-03-31")


@pytest.fixture(scope="module")
def ds(demo_tables):
    return make_dataset(demo_tables)


def _flip_future(tables: dict, as_of: pd.Timestamp, *, after: bool = True) -> dict:
    """Swap won/lost and triple the amount of deals closed after (or on/before) ``as_of``."""
    t = {k: v.copy() for k, v in tables.items()}
    o = t["opportunities"]
    closed = o["status"].isin(["won", "lost"])
    when = o["close_date"] > as_of if after else o["close_date"] <= as_of
    hit = closed & when
    swap = {"Closed Won": "Closed Lost", "Closed Lost": "Closed Won"}
    o.loc[hit, "stage"] = o.loc[hit, "stage"].map(swap)
    o.loc[hit, "status"] = o.loc[hit, "status"].map({"won": "lost", "lost": "won"})
    o.loc[hit, "amount"] = o.loc[hit, "amount"] * 3
    h = t["stage_history"]
    ids = set(o.loc[hit, "opportunity_id"])
    rows = h["opportunity_id"].isin(ids) & h["stage"].isin(list(swap))
    h.loc[rows, "stage"] = h.loc[rows, "stage"].map(swap)
    return t


# --------------------------------------------------------------------------- metrics


def test_classifier_metrics_by_hand():
    # pairs (won, lost): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> AUC 3/4
    # Brier = (0.1^2 + 0.4^2 + 0.65^2 + 0.2^2) / 4 = (0.01+0.16+0.4225+0.04)/4 = 0.158125
    # base 0.5 -> Brier 0.25 for every row; skill = 1 - 0.158125/0.25 = 0.3675
    m = scoring.compute_classifier_metrics(
        [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], base_rate=0.5, model="m"
    )
    row = m.iloc[0]
    assert row["n"] == 4 and row["won"] == 2
    assert row["auc"] == pytest.approx(0.75)
    assert row["brier"] == pytest.approx(0.158125)
    assert row["brier_base"] == pytest.approx(0.25)
    assert row["brier_skill"] == pytest.approx(0.3675)
    assert row["auc_low"] <= 0.75 <= row["auc_high"]
    assert row["brier_low"] < row["brier"] < row["brier_high"]


def test_classifier_metrics_single_class_has_no_auc():
    m = scoring.compute_classifier_metrics([1, 1], [0.5, 0.7], base_rate=0.5)
    assert np.isnan(m["auc"].iloc[0])
    with pytest.raises(ValueError, match="same length"):
        scoring.compute_classifier_metrics([1, 0], [0.5], base_rate=0.5)


def test_calibration_curve_of_perfectly_calibrated_predictions():
    # 10 deals scored 0.2 of which 2 won, 10 scored 0.7 of which 7 won:
    # each bin's observed rate equals its prediction exactly
    p = [0.2] * 10 + [0.7] * 10
    y = [1, 1] + [0] * 8 + [1] * 7 + [0] * 3
    c = scoring.compute_calibration_curve(y, p, bins=2, model="m")
    assert c["n"].tolist() == [10, 10]
    assert c["won"].tolist() == [2, 7]
    assert c["mean_predicted"].tolist() == pytest.approx([0.2, 0.7])
    assert c["observed"].tolist() == pytest.approx([0.2, 0.7])
    assert (c["ci_low"] < c["observed"]).all() and (c["observed"] < c["ci_high"]).all()


def test_stage_product_rates_shrink_by_hand():
    # stage S: a (P, won), b (P, lost), c (Q, won), d (Q, won); a is seen on two cuts
    # but counts once. p_all = 3/4; k = 4: p_S = (3 + 4*0.75) / (4 + 4) = 0.75
    # P: (1 + 4*0.75) / (2 + 4) = 4/6; Q: (2 + 3) / (2 + 4) = 5/6
    ex = pd.DataFrame(
        {
            "opportunity_id": ["a", "a", "b", "c", "d"],
            "stage": ["S"] * 5,
            "product": ["P", "P", "P", "Q", "Q"],
            "won": [1, 1, 0, 1, 1],
        }
    )
    r = scoring.compute_stage_product_rates(ex, strength=4)
    assert r["n"].tolist() == [2, 2]
    assert r["won"].tolist() == [1, 2]
    assert r["raw_rate"].tolist() == pytest.approx([0.5, 1.0])
    assert r["win_rate"].tolist() == pytest.approx([4 / 6, 5 / 6])
    assert ((r["ci_low"] < r["win_rate"]) & (r["win_rate"] < r["ci_high"])).all()
    with pytest.raises(ValueError, match="strength"):
        scoring.compute_stage_product_rates(ex, strength=0)


# --------------------------------------------------------------------------- features


def test_training_examples_only_hold_deals_closed_by_as_of(ds, demo_tables):
    ex = scoring.compute_training_examples(ds, as_of=AS_OF, every_days=30)
    assert (ex["close_date"] <= AS_OF).all()
    assert (ex["cut"] < AS_OF).all() and (ex["cut"] < ex["close_date"]).all()
    o = demo_tables["opportunities"]
    later = o.loc[o["close_date"] > AS_OF, "opportunity_id"]
    assert not ex["opportunity_id"].isin(later).any()
    assert set(ex["won"]) == {0, 1}


def test_training_examples_match_the_snapshot_on_each_cut(ds):
    """The vectorised examples equal the features of ds.snapshot(cut), deal by deal."""
    ex = scoring.compute_training_examples(ds, as_of=AS_OF, every_days=45)
    for cut in ex["cut"].drop_duplicates().iloc[[2, 6, -1]]:
        got = ex.loc[ex["cut"].eq(cut)].drop(columns=["cut", "won", "close_date", "expected_close"])
        want = scoring.compute_deal_features(ds, as_of=cut)
        want = want.loc[want["opportunity_id"].isin(got["opportunity_id"])]
        assert len(want) == len(got) > 0
        assert_frame_equal(
            got.sort_values("opportunity_id").reset_index(drop=True),
            want.sort_values("opportunity_id").reset_index(drop=True)[got.columns],
            check_dtype=False,
        )


def test_features_count_pushes_and_time_in_stage():
    # one open deal: created 1 Jan, expected close pushed twice (Jan 31 -> Feb 28 -> Mar 31),
    # in Qualification since 10 Jan; as_of 19 Jan -> 10 days in stage (to the end of the
    # 19th), 1 push so far (the second one comes after as_of)
    opps = pd.DataFrame(
        {
            "opportunity_id": ["x", "y"],
            "stage": ["Qualification", "Closed Won"],
            "status": ["open", "won"],
            "created_date": pd.to_datetime(["2025-01-01", "2024-12-01"]),
            "close_date": pd.to_datetime(["2025-03-31", "2024-12-20"]),
            "amount": [1000.0, 500.0],
            "product": ["A", "A"],
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": ["x", "x", "x", "x"],
            "stage": ["Prospecting", "Prospecting", "Qualification", "Qualification"],
            "entered_at": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-01-10", "2025-01-25"]),
            "amount": [1000.0] * 4,
            "close_date": pd.to_datetime(["2025-01-31", "2025-02-28", "2025-02-28", "2025-03-31"]),
        }
    )
    d = make_dataset({"opportunities": opps, "stage_history": hist})
    f = scoring.compute_deal_features(d, as_of="2025-01-19")
    row = f.set_index("opportunity_id").loc["x"]
    assert row["stage"] == "Qualification"
    assert row["pushes"] == 1
    assert row["days_in_stage"] == 10
    assert row["age_days"] == 19
    assert row["days_to_close"] == (pd.Timestamp("2025-02-28") - pd.Timestamp("2025-01-20")).days
    assert row["log_amount"] == pytest.approx(np.log1p(1000))
    later = scoring.compute_deal_features(d, as_of="2025-02-01").set_index("opportunity_id")
    assert later.loc["x", "pushes"] == 2


# --------------------------------------------------------------------------- models


@pytest.mark.slow
def test_no_leakage_from_deals_closed_after_as_of(demo_tables):
    """Rewriting how every later deal ended changes nothing learnt or scored on as_of."""
    ds = make_dataset(demo_tables)
    model = scoring.fit_win_model(ds, as_of=AS_OF)
    scored = scoring.score_open_deals(ds, as_of=AS_OF, model=model)
    assert not model.fallback

    future = make_dataset(_flip_future(demo_tables, AS_OF, after=True))
    model_f = scoring.fit_win_model(future, as_of=AS_OF)
    assert_frame_equal(model.comparison, model_f.comparison)
    assert_frame_equal(scored, scoring.score_open_deals(future, as_of=AS_OF, model=model_f))

    # the test can see leakage: rewriting the *past* does change the scores
    past = make_dataset(_flip_future(demo_tables, AS_OF, after=False))
    changed = scoring.score_open_deals(past, as_of=AS_OF)
    assert not np.allclose(
        changed["win_probability"].sort_values(), scored["win_probability"].sort_values()
    )


@pytest.mark.slow
def test_fit_compares_three_models_and_calibrates_the_best(ds):
    model = scoring.fit_win_model(ds, as_of=AS_OF)
    cmp_ = model.comparison
    assert cmp_["model"].tolist()[:3] == [
        "logistic regression (L2)",
        "gradient boosting",
        "naive Bayes (CRM-style baseline)",
    ]
    assert cmp_["chosen"].sum() == 1
    chosen = cmp_.loc[cmp_["chosen"], "model"].iloc[0]
    assert chosen.endswith("(calibrated)") and chosen == model.method
    best_raw = cmp_.iloc[:3].loc[cmp_["auc"].iloc[:3].idxmax(), "model"]
    assert chosen.startswith(best_raw)
    # the demo holds real signal: every model ranks later deals better than chance, and the
    # calibrated choice beats always predicting the base rate (naive Bayes, overconfident
    # by construction, need not)
    assert (cmp_["auc"] > 0.6).all()
    assert (cmp_.loc[cmp_["chosen"], "brier_skill"] > 0.1).all()
    assert set(model.calibration["model"]) == set(cmp_["model"])
    assert model.split_date < AS_OF


@pytest.mark.slow
def test_score_open_deals(ds):
    model = scoring.fit_win_model(ds, as_of=AS_OF)
    scored = scoring.score_open_deals(ds, as_of=AS_OF, model=model)
    snap = ds.snapshot(AS_OF).opportunities
    assert len(scored) == int(snap["status"].eq("open").sum())
    assert scored["win_probability"].between(0, 1).all()
    assert scored["expected_value"].to_numpy() == pytest.approx(
        (scored["amount"] * scored["win_probability"]).to_numpy(), nan_ok=True
    )
    assert scored["expected_value"].is_monotonic_decreasing
    assert scored["factors"].str.contains(r"\(\+|\(-", regex=True).all()
    with pytest.raises(ValueError, match="fitted as of"):
        scoring.score_open_deals(ds, as_of="2025-04-30", model=model)


def test_too_few_closed_deals_fall_back_to_shrunken_rates_and_say_so():
    small = make_dataset(demo.generate_demo(n_opportunities=120, seed=5))
    model = scoring.fit_win_model(small, as_of="2025-12-31")
    assert model.fallback
    assert "Too little history" in model.notes[0] and "stage x product" in model.notes[0]
    scored = scoring.score_open_deals(small, as_of="2025-12-31", model=model)
    assert scored["win_probability"].between(0, 1).all()
    rates = model.rates.set_index(["stage", "product"])["win_rate"]
    first = scored.iloc[0]
    if (first["stage"], first["product"]) in rates.index:
        assert first["win_probability"] == pytest.approx(rates[(first["stage"], first["product"])])


def test_no_closed_deal_is_a_clear_error(ds):
    with pytest.raises(InsufficientDataError, match="no deal was won or lost"):
        scoring.fit_win_model(ds, as_of="2023-01-03")
    with pytest.raises(ValueError, match="every_days"):
        scoring.compute_training_examples(ds, as_of=AS_OF, every_days=0)
    with pytest.raises(ValueError, match="test_share"):
        scoring.fit_win_model(ds, as_of=AS_OF, test_share=1.5)


def test_does_not_mutate_the_dataset(demo_tables):
    before = copy.deepcopy(dict(demo_tables))
    d = make_dataset(demo_tables)
    scoring.compute_training_examples(d, as_of=AS_OF, every_days=60)
    scoring.compute_deal_features(d, as_of=AS_OF)
    for name, frame in before.items():
        assert_frame_equal(demo_tables[name], frame)


# --------------------------------------------------------------------------- scale


def _history_case() -> Dataset:
    """Three closed deals; the history is out of order, has two changes entered at the same
    moment, one without a date and one of a deal that is not in the opportunities."""
    opps = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c"],
            "stage": ["Closed Won", "Closed Lost", "Closed Won"],
            "status": ["won", "lost", "won"],
            "created_date": pd.to_datetime(["2025-01-01", "2025-01-10", "2025-01-05"]),
            "close_date": pd.to_datetime(["2025-03-01", "2025-02-20", "2025-02-25"]),
            "amount": [100.0, 200.0, 300.0],
        }
    )
    hist = pd.DataFrame(
        {
            "opportunity_id": ["b", "a", "z", "a", "a", "b", "a", "a"],
            "stage": [
                "Closed Lost",
                "Closed Won",
                "Prospecting",
                "Qualification",
                "Needs Analysis",
                "Prospecting",
                "Negotiation/Review",
                "Prospecting",
            ],
            "entered_at": pd.to_datetime(
                [
                    "2025-02-20",
                    "2025-03-01",
                    "2025-01-01",
                    "2025-01-20",
                    "2025-01-20",
                    "2025-01-10",
                    None,
                    "2025-01-01",
                ]
            ),
            "amount": [np.nan, 160.0, 5.0, 150.0, 160.0, np.nan, 170.0, 100.0],
            "close_date": pd.to_datetime(
                [
                    "2025-02-20",
                    "2025-03-01",
                    "2025-02-01",
                    "2025-02-15",
                    "2025-03-01",
                    "2025-02-10",
                    "2025-03-05",
                    "2025-02-01",
                ]
            ),
        }
    )
    return make_dataset({"opportunities": opps, "stage_history": hist})


def test_training_examples_by_hand_from_an_untidy_history():
    # cuts every 30 days back from 31 Mar, from the first created date (1 Jan): 30 Jan and
    # 1 Mar. On 1 Mar every deal has closed, so the examples are the three deals on 30 Jan
    # (as known at the end of that day):
    # a: Qualification and Needs Analysis both entered on 20 Jan -> the later row (Needs
    #    Analysis, 160, close 1 Mar); in that stage since 20 Jan = 11 days; the expected
    #    close moved 1 Feb -> 15 Feb -> 1 Mar = 2 pushes; the undated row is ignored
    # b: Prospecting since 10 Jan (21 days), no amount in the history -> its own 200
    # c: no history -> the last open stage, its own amount and (final) close date
    ex = scoring.compute_training_examples(_history_case(), as_of="2025-03-31", every_days=30)
    assert ex["cut"].eq(pd.Timestamp("2025-01-30")).all()
    got = ex.set_index("opportunity_id")
    assert got["stage"].tolist() == ["Needs Analysis", "Prospecting", "Negotiation/Review"]
    assert got["log_amount"].tolist() == pytest.approx(np.log1p([160.0, 200.0, 300.0]))
    assert got["days_in_stage"].tolist()[:2] == [11.0, 21.0] and np.isnan(got.loc["c", "pushes"])
    assert got["pushes"].tolist()[:2] == [2.0, 0.0]
    assert got["age_days"].tolist() == [30.0, 21.0, 26.0]
    assert got["days_to_close"].tolist() == [29.0, 10.0, 25.0]
    assert got["expected_close"].tolist() == list(
        pd.to_datetime(["2025-03-01", "2025-02-10", "2025-02-25"])
    )
    assert got["won"].tolist() == [1, 0, 1]
    assert ex.attrs == {"n_available": 3, "n_deals": 3, "n_won_deals": 2}
    # the dates only, without the features
    bare = scoring.compute_training_examples(
        _history_case(), as_of="2025-03-31", every_days=30, features=False
    )
    assert bare.columns.tolist() == ["cut", "opportunity_id", "expected_close", "won", "close_date"]
    assert_frame_equal(bare, ex[bare.columns.tolist()])


def test_training_examples_sample_is_stratified_and_seeded(ds):
    full = scoring.compute_training_examples(ds, as_of=AS_OF)
    sample = scoring.compute_training_examples(ds, as_of=AS_OF, max_examples=300, seed=1)
    # every stratum (cut date x outcome) keeps its share, rounded: round(n * 300 / N)
    share = 300 / len(full)
    want = (full.groupby(["cut", "won"]).size() * share + 0.5).apply(np.floor).astype("int64")
    got = sample.groupby(["cut", "won"]).size().reindex(want.index, fill_value=0)
    assert_series_equal(got, want, check_names=False)
    assert abs(len(sample) - 300) <= len(want) / 2
    # the sampled rows are examples as they are, in the same order
    keys = ["opportunity_id", "cut"]
    rows = full.reset_index().merge(sample[keys], on=keys)
    assert_frame_equal(rows.drop(columns="index"), sample.reset_index(drop=True))
    assert rows["index"].is_monotonic_increasing
    assert sample.attrs["n_available"] == len(full)
    assert sample.attrs["n_deals"] == full["opportunity_id"].nunique()
    # seeded: the same seed, the same sample; another seed, another one
    again = scoring.compute_training_examples(ds, as_of=AS_OF, max_examples=300, seed=1)
    assert_frame_equal(sample, again)
    other = scoring.compute_training_examples(ds, as_of=AS_OF, max_examples=300, seed=2)
    assert not other["opportunity_id"].equals(sample["opportunity_id"])
    # a cap above the count keeps everything
    assert_frame_equal(
        scoring.compute_training_examples(ds, as_of=AS_OF, max_examples=len(full)), full
    )
    with pytest.raises(ValueError, match="max_examples"):
        scoring.compute_training_examples(ds, as_of=AS_OF, max_examples=0)


@pytest.mark.slow
def test_fit_on_a_sample_says_so(ds):
    full = scoring.compute_training_examples(ds, as_of=AS_OF)
    model = scoring.fit_win_model(ds, as_of=AS_OF, max_examples=600)
    assert abs(model.n_examples - 600) < 40
    assert model.n_closed == full["opportunity_id"].nunique()  # deals, not the sample's
    assert any(
        f"random sample of {model.n_examples:,} of the {len(full):,}" in n for n in model.notes
    )
    assert not scoring.fit_win_model(ds, as_of=AS_OF).notes[0].startswith("Learnt from a random")


@pytest.mark.slow
def test_threads_change_nothing(ds, monkeypatch):
    """Candidate fits, calibrations and predictions in threads give the serial results."""
    serial = scoring.fit_win_model(ds, as_of=AS_OF, n_jobs=1)
    threaded = scoring.fit_win_model(ds, as_of=AS_OF, n_jobs=2)
    assert_frame_equal(serial.comparison, threaded.comparison)
    assert_frame_equal(serial.calibration, threaded.calibration)
    monkeypatch.setattr(scoring, "_ROWS_PER_THREAD", 5)  # the open deals in two chunks
    one = scoring.score_open_deals(ds, as_of=AS_OF, model=serial, n_jobs=1)
    two = scoring.score_open_deals(ds, as_of=AS_OF, model=threaded, n_jobs=2)
    assert_frame_equal(one, two)
    assert one.attrs["factors_for"] == len(one) and one["factors"].notna().all()
    # factors for the deals of most expected value only: the same ones, the rest missing
    few = scoring.score_open_deals(ds, as_of=AS_OF, model=serial, max_factor_deals=5)
    assert few.attrs["factors_for"] == 5
    assert_frame_equal(few.drop(columns="factors"), one.drop(columns="factors"))
    assert few["factors"].iloc[:5].tolist() == one["factors"].iloc[:5].tolist()
    assert few["factors"].iloc[5:].isna().all()
    with pytest.raises(ValueError, match="max_factor_deals"):
        scoring.score_open_deals(ds, as_of=AS_OF, model=serial, max_factor_deals=0)
