"""Categorical and missing features through a real served app (issue 13).

A user's FastAPI app serves a Pipeline whose ColumnTransformer selects columns by name (one
categorical column, one numeric column with missing values, HistGradientBoosting after it),
on 127.0.0.1 behind the middleware. Named records with strings and ``null`` reach the app and
are observed; a value the model cannot take is a 422 naming the column, and nothing is counted.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from serving_helpers import client, running
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from monitor import Monitor, Profile
from monitor.serving import ClientIdentifier, ExtractionMonitorMiddleware, ServingConfig

ROUTE = "/invocations"


def training_frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.normal(40, 10, n),
        "income": rng.lognormal(10, 0.5, n),
        "color": rng.choice(["red", "blue", "green"], n, p=[0.5, 0.3, 0.2]),
    })
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    y = ((frame["age"] > 40) ^ (frame["color"] == "blue")).to_numpy(int)
    return frame, y


def fitted_pipeline():
    frame, y = training_frame()
    model = make_pipeline(
        ColumnTransformer([("color", OneHotEncoder(handle_unknown="ignore"), ["color"])],
                          remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=30, random_state=0))
    model.fit(frame, y)
    return model, frame, y


def model_app(model) -> FastAPI:
    """The user's own MLflow-style app: DataFrame records in, probabilities out."""
    app = FastAPI()

    @app.post(ROUTE)
    async def invocations(request: Request):
        records = pd.DataFrame.from_records((await request.json())["dataframe_records"])
        return {"predictions": model.predict_proba(records).tolist()}

    return app


@pytest.fixture(scope="module")
def served():
    model, frame, y = fitted_pipeline()
    monitor = Monitor(Profile(seed=0).fit(model, frame, y))
    app = model_app(model)
    app.add_middleware(ExtractionMonitorMiddleware, monitor=monitor, routes=[ROUTE],
                       config=ServingConfig(salt="features"))
    with running(app) as base:
        yield base, monitor, frame


@pytest.mark.slow
def test_the_proxy_flags_a_uniform_attacker_on_categorical_missing_features():
    from monitor.serving.proxy import build_proxy_app

    model, frame, y = fitted_pipeline()
    monitor = Monitor(Profile(seed=0).fit(model, frame, y))
    rng = np.random.default_rng(3)
    low, high = frame[["age", "income"]].min(), frame[["age", "income"]].max()
    with running(model_app(model)) as upstream:
        proxy = build_proxy_app(upstream, monitor, ServingConfig(salt="features"))
        with running(proxy) as base:
            with client(base, "uniform") as http:
                for _ in range(60):
                    row = {"age": float(rng.uniform(low["age"], high["age"])),
                           "income": float(rng.uniform(low["income"], high["income"])),
                           "color": str(rng.choice(["red", "blue", "green"]))}
                    assert http.post(ROUTE, json={"dataframe_records": [row]}).status_code \
                        == 200
            fresh, _ = training_frame(n=60, seed=9)  # new records from the same population
            with client(base, "benign") as http:
                for i in range(60):
                    row = fresh.iloc[i]
                    record = {"age": float(row["age"]), "color": row["color"],
                              "income": None if np.isnan(row["income"]) else
                              float(row["income"])}
                    answer = http.post(ROUTE, json={"dataframe_records": [record]})
                    assert answer.status_code == 200, answer.text
    attacker, benign = monitor.verdict(_id("uniform")), monitor.verdict(_id("benign"))
    assert attacker.n_queries == 60 and benign.n_queries == 60
    assert attacker.flagged and not benign.flagged, (attacker.reason, benign.reason)


@pytest.mark.slow
def test_named_categorical_and_missing_records_are_answered_and_observed(served):
    base, monitor, frame = served
    records = [{"color": "red", "income": None, "age": 31.0},
               {"income": 21000.0, "age": 52.0, "color": "blue"}]
    with client(base, "analyst") as http:
        answer = http.post(ROUTE, json={"dataframe_records": records})
    assert answer.status_code == 200, answer.text
    assert np.asarray(answer.json()["predictions"]).shape == (2, 2)
    assert monitor.verdict(_id("analyst")).n_queries == 2


def test_a_value_the_model_cannot_take_is_a_422_naming_the_column(served):
    base, monitor, _ = served
    with client(base, "careless") as http:
        bad = http.post(ROUTE, json={"dataframe_records": [
            {"color": "red", "income": 1.0, "age": "old"}]})  # a word in a numeric column
        worse = http.post(ROUTE, json={"dataframe_records": [
            {"color": "red", "income": 1.0, "age": 30.0, "height": 2.0}]})
    assert bad.status_code == 422 and "age" in bad.text, bad.text
    assert worse.status_code == 422 and "height" in worse.text, worse.text
    assert monitor.state(_id("careless")) is None  # refused before anything was recorded


def test_unseen_categories_are_answered_and_count_as_unusual(served, caplog):
    base, monitor, frame = served
    caplog.set_level(logging.WARNING, logger="extraction_monitor")
    rng = np.random.default_rng(1)
    with client(base, "stranger") as http:
        for i in range(40):
            answer = http.post(ROUTE, json={"dataframe_records": [
                {"color": f"colour-{i}", "income": float(rng.lognormal(10, 0.5)),
                 "age": float(rng.normal(40, 10))}]})
            assert answer.status_code == 200, answer.text
    with client(base, "regular") as http:
        for i in range(40):
            row = frame.iloc[i]
            answer = http.post(ROUTE, json={"dataframe_records": [
                {"color": row["color"], "age": float(row["age"]),
                 "income": None if np.isnan(row["income"]) else float(row["income"])}]})
            assert answer.status_code == 200, answer.text
    stranger, regular = monitor.verdict(_id("stranger")), monitor.verdict(_id("regular"))
    assert stranger.n_queries == 40 and regular.n_queries == 40
    assert stranger.flagged and not regular.flagged, (stranger.reason, regular.reason)
    events = [r.extraction_monitor_event for r in caplog.records
              if hasattr(r, "extraction_monitor_event")]
    assert [e["client_id"] for e in events if e["event"] == "client_flagged"] == \
        [stranger.client_id]  # one flag, logged once, in the schema offline logs use


def _id(key: str) -> str:
    return ClientIdentifier("features").hash_key(key)


def test_a_regressor_is_served_observed_and_degraded_to_significant_digits():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 5))
    model = Ridge().fit(X, X @ np.arange(1.0, 6.0) * 100 + 7)
    monitor = Monitor(Profile(seed=0).fit(model, X))
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        rows = np.asarray((await request.json())["instances"], dtype=float)
        return {"predictions": [[v] for v in model.predict(rows).tolist()]}

    app.add_middleware(ExtractionMonitorMiddleware, monitor=monitor, routes=["/predict"],
                       config=ServingConfig(salt="features", actions=["log", "degrade"],
                                            degrade_decimals=2))
    with running(app) as base, client(base, "solver") as http:
        answers = [http.post("/predict", json={"instances": rng.uniform(-8, 8, (1, 5)).tolist()})
                   for _ in range(30)]
    assert all(a.status_code == 200 for a in answers)
    verdict = monitor.verdict(_id("solver"))
    assert verdict.n_queries == 30 and verdict.flagged, verdict.reason
    values = [a.json()["predictions"][0] for a in answers[verdict.flag_at + 1:]]
    assert values and all(np.ravel(v)[0] == float(f"{np.ravel(v)[0]:.2g}") for v in values)


def test_a_null_category_the_model_takes_is_served_and_observed(served):
    """Training had no missing colour, but the pipeline's encoder ignores unknown values, so
    the model answers a null colour: the monitor must let it through and observe it."""
    base, monitor, _ = served
    assert monitor.profile.schema_.allow_nan[monitor.feature_names.index("color")]
    records = [{"color": None, "income": 20000.0, "age": 35.0},
               {"color": "red", "income": None, "age": 44.0}]
    with client(base, "no-colour") as http:
        answer = http.post(ROUTE, json={"dataframe_records": records})
    assert answer.status_code == 200, answer.text
    assert np.asarray(answer.json()["predictions"]).shape == (2, 2)
    assert monitor.verdict(_id("no-colour")).n_queries == 2


def test_a_null_category_the_model_cannot_take_is_a_422_naming_the_column():
    frame, y = training_frame()
    strict = make_pipeline(  # an encoder that refuses values it never saw, null included
        ColumnTransformer([("color", OneHotEncoder(), ["color"])], remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=10, random_state=0)).fit(frame, y)
    monitor = Monitor(Profile(seed=0).fit(strict, frame, y))
    app = model_app(strict)
    app.add_middleware(ExtractionMonitorMiddleware, monitor=monitor, routes=[ROUTE],
                       config=ServingConfig(salt="features"))
    with running(app) as base, client(base, "no-colour") as http:
        answer = http.post(ROUTE, json={"dataframe_records": [
            {"color": None, "income": 1.0, "age": 30.0}]})
    assert answer.status_code == 422, answer.text
    assert "'color'" in answer.json()["error"] and "missing" in answer.json()["error"]
    assert monitor.state(_id("no-colour")) is None
