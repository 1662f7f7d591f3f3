"""The proxy in front of the real servers: ``mlflow models serve`` and a ``kserve.ModelServer``,
each in its own virtual environment, on 127.0.0.1.

Acceptance (issue 13): the proxy with its default settings — no route configured — in front
of the real MLflow scoring server flags and blocks a uniform-random attacker and leaves a
benign client alone; every request format MLflow accepts is observed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile

import httpx
import numpy as np
import pytest
from real_servers import listening_addresses, realservers, server_venv, wait_http
from serving_helpers import free_port, serve_process

from monitor import Profile
from monitor.serving import ClientIdentifier
from victims import load_victim

pytestmark = [pytest.mark.realservers, realservers]

VICTIM = "cancer-logreg"
SALT = "real-servers-salt"
TOKEN = "real-servers-token"
MLFLOW = ["mlflow==3.17.2", "scikit-learn==1.9.1"]
KSERVE = ["kserve==0.21.0", "scikit-learn==1.9.1"]
BLOCK = '[serving]\nactions = ["log", "block"]\n'

TRAIN = """
import sys, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
data = np.load(sys.argv[1])
model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
model.fit(data["X"], data["y"])
"""
MLFLOW_SAVE = TRAIN + """
import json, mlflow.sklearn, pandas as pd
from mlflow.models import infer_signature
frame = pd.DataFrame(data["X"], columns=json.loads(sys.argv[3]))
mlflow.sklearn.save_model(model, sys.argv[2],
                          signature=infer_signature(frame, model.predict(data["X"])))
"""
KSERVE_SERVE = TRAIN + """
import kserve
from kserve import InferRequest, InferResponse, InferOutput

class Model(kserve.Model):
    def __init__(self):
        super().__init__("cancer")
        self.ready = True

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            inputs = payload.inputs
            if len(inputs) == 1:
                X = inputs[0].as_numpy()
            else:
                X = np.column_stack([t.as_numpy().reshape(-1) for t in inputs])
            proba = model.predict_proba(X)
            out = InferOutput(name="probabilities", shape=list(proba.shape), datatype="FP64")
            out.set_data_from_numpy(proba, binary_data=False)
            return InferResponse(model_name=self.name, infer_outputs=[out],
                                 response_id=payload.id or "response")
        return {"predictions": model.predict_proba(np.asarray(payload["instances"])).tolist()}

server = kserve.ModelServer(http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]),
                            enable_grpc=False)
import uvicorn
_config = uvicorn.Config.__init__
def _local(self, *args, **kwargs):  # KServe binds 0.0.0.0: force 127.0.0.1
    kwargs["host"] = "127.0.0.1"
    _config(self, *args, **kwargs)
uvicorn.Config.__init__ = _local
server.start([Model()])
"""


@pytest.fixture(scope="module")
def victim():
    return load_victim(VICTIM)


@pytest.fixture(scope="module")
def workdir(victim):
    with tempfile.TemporaryDirectory(prefix="real-servers-") as folder:
        path = os.path.join(folder, "train.npz")
        np.savez(path, X=victim.X_train, y=victim.y_train)
        profile = Profile(seed=0).fit(victim.model, victim.X_train, victim.y_train,
                                      X_cal=victim.X_cal, y_cal=victim.y_cal,
                                      feature_names=victim.feature_names)
        profile.save(os.path.join(folder, "profile"))
        yield folder


@contextlib.contextmanager
def process(args: list[str], url: str, env=None):
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    try:
        wait_http(url, timeout=180, proc=proc)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def proxy(upstream: str, folder: str):
    args = ["proxy", "--upstream", upstream, "--profile", os.path.join(folder, "profile"),
            "--state", f"sqlite://{folder}/state-{free_port()}.db"]  # no --route: defaults
    with serve_process(args, TOKEN, SALT, config=BLOCK, workdir=folder) as admin:
        yield admin


def n_queries(admin: httpx.Client, key: str) -> int:
    r = admin.get(f"/monitor/clients/{ClientIdentifier(SALT).hash_key(key)}")
    return r.json()["n_queries"] if r.status_code == 200 else 0


def attack_rows(victim, n):
    return np.random.default_rng(7).uniform(victim.lower, victim.upper, (n, victim.n_features))


def attack_and_benign(base: str, admin: httpx.Client, victim, path: str, encode):
    """A benign client stays unflagged; a uniform-random one is blocked from its flag on."""
    names = list(victim.feature_names)
    with httpx.Client(base_url=base, headers={"X-API-Key": "benign"}, timeout=30) as good:
        for row in victim.X_public[:40]:
            r = good.post(path, json=encode(row[None], names))
            assert r.status_code == 200, r.text
    with httpx.Client(base_url=base, headers={"X-API-Key": "uniform"}, timeout=30) as bad:
        statuses = [bad.post(path, json=encode(row[None], names)).status_code
                    for row in attack_rows(victim, 60)]
    assert 403 in statuses, "the uniform-random attacker was not blocked"
    first = statuses.index(403)
    assert set(statuses[:first]) == {200} and set(statuses[first:]) == {403}
    benign = admin.get(f"/monitor/clients/{ClientIdentifier(SALT).hash_key('benign')}").json()
    assert benign["n_queries"] == 40 and not benign["flagged"]
    return first


def split(X, names):
    return {"dataframe_split": {"columns": names, "data": X.tolist()}}


def test_real_mlflow_behind_the_default_proxy(victim, workdir):
    bin_dir = server_venv("mlflow", MLFLOW)
    model_dir = os.path.join(workdir, "mlflow-model")
    if not os.path.exists(model_dir):
        subprocess.run([str(bin_dir / "python"), "-c", MLFLOW_SAVE,
                        os.path.join(workdir, "train.npz"), model_dir,
                        json.dumps(list(victim.feature_names))], check=True)
    port = free_port()
    mlflow = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_dir, "--env-manager",
              "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    upstream = f"http://127.0.0.1:{port}"
    with process(mlflow, upstream + "/ping", env=env), proxy(upstream, workdir) as admin:
        base = str(admin.base_url)
        first = attack_and_benign(base, admin, victim, "/invocations", split)
        print(f"real MLflow {MLFLOW[0]}: uniform attacker blocked at query {first + 1}, "
              "benign client unflagged")
        names = list(victim.feature_names)
        X = victim.X_public[40:43]
        bodies = [
            {"dataframe_records": [dict(zip(names, r, strict=True)) for r in X.tolist()]},
            {"instances": X.tolist()},
            {"inputs": X.tolist()},
            {"inputs": {n: X[:, i].tolist() for i, n in enumerate(names)}},
        ]
        csv = ",".join(names) + "\n" + "\n".join(",".join(map(repr, r)) for r in X.tolist())
        answered, observed = [], 0
        with httpx.Client(base_url=base, headers={"X-API-Key": "formats"}, timeout=30) as c:
            for body in [*bodies, csv]:
                if isinstance(body, str):
                    r = c.post("/invocations", content=body, headers={"content-type": "text/csv"})
                else:
                    r = c.post("/invocations", json=body)
                name = "csv" if isinstance(body, str) else next(iter(body))
                if r.status_code == 200:  # every answer MLflow gives is observed
                    assert len(r.json()["predictions"]) == 3
                    observed += 3
                    answered.append(name if name != "inputs" or isinstance(
                        body["inputs"], list) else "inputs (columns)")
                else:
                    assert 400 <= r.status_code < 500, r.text[:300]
                assert n_queries(admin, "formats") == observed, name
        print(f"formats MLflow answered (all observed): {', '.join(answered)}")
        assert {"dataframe_records", "inputs (columns)", "csv"} <= set(answered)
        metrics = admin.get("/monitor/metrics").text
        # MLflow answers labels: the boundary detector has no evidence, and that is said
        assert 'extraction_monitor_detector_without_evidence{detector="boundary"} 1.0' in metrics


def v1(X, names):
    return {"instances": X.tolist()}


def v2_columns(X, names):
    return {"inputs": [{"name": n, "shape": [len(X)], "datatype": "FP64",
                        "data": X[:, i].tolist()} for i, n in enumerate(names)]}


def test_real_kserve_behind_the_default_proxy(victim, workdir):
    bin_dir = server_venv("kserve", KSERVE)
    port, grpc = free_port(), free_port()
    server = [str(bin_dir / "python"), "-c", KSERVE_SERVE, os.path.join(workdir, "train.npz"),
              str(port), str(grpc)]
    upstream = f"http://127.0.0.1:{port}"
    with process(server, upstream + "/v2/health/ready"), proxy(upstream, workdir) as admin:
        base = str(admin.base_url)
        first = attack_and_benign(base, admin, victim, "/v1/models/cancer:predict", v1)
        print(f"real KServe {KSERVE[0]} v1: uniform attacker blocked at query {first + 1}")
        names = list(victim.feature_names)
        X = victim.X_public[50:53]
        with httpx.Client(base_url=base, headers={"X-API-Key": "v2"}, timeout=30) as c:
            one = {"inputs": [{"name": "x", "shape": list(X.shape), "datatype": "FP64",
                               "data": X.ravel().tolist()}]}
            for i, body in enumerate([one, v2_columns(X, names)]):
                r = c.post("/v2/models/cancer/infer", json=body)
                assert r.status_code == 200, r.text[:300]
                assert n_queries(admin, "v2") == 3 * (i + 1)
        assert json.loads(admin.get("/monitor/clients").text)["total"] == 3
        assert listening_addresses(port) == {"127.0.0.1"}  # not KServe's default 0.0.0.0
