"""Serving pieces without HTTP: config, identity, extractors, degrade, throttle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.serving import ClientIdentifier, ExtractionError, ServingConfig, degrade, extract_rows
from monitor.serving.actions import Throttle


def test_config_rejects_unknown_and_invalid(tmp_path):
    with pytest.raises(ValueError, match="unknown \\[serving\\] key"):
        ServingConfig.from_dict({"max_body": 1})
    with pytest.raises(ValueError, match="unknown action"):
        ServingConfig(actions=[{"action": "explode"}])
    with pytest.raises(ValueError, match="trusted_proxies"):
        ServingConfig(trusted_proxies=["not-an-ip"])
    with pytest.raises(ValueError, match="webhook_url"):
        ServingConfig(webhook_url="ftp://x")
    path = tmp_path / "cfg.toml"
    path.write_text('[monitor]\nalpha = 0.01\n[serving]\nmax_body_bytes = 2048\n'
                    '[[serving.actions]]\naction = "block"\nmin_score = 3.0\n')
    cfg = ServingConfig.load(path)
    assert cfg.max_body_bytes == 2048 and cfg.actions[0].min_score == 3.0
    assert ServingConfig.from_dict(cfg.to_dict()).actions == cfg.actions


def test_identity_hashes_keys_and_honours_only_trusted_proxies():
    ident = ClientIdentifier("salt", trusted_proxies=["10.0.0.0/8"], use_bearer=True)
    other_salt = ClientIdentifier("pepper")
    key = {"headers": [(b"x-api-key", b"secret")], "client": ("1.2.3.4", 1)}
    assert ident(key) != other_salt(key) and "secret" not in ident(key)
    bearer = {"headers": [(b"authorization", b"Bearer secret")], "client": ("1.2.3.4", 1)}
    assert ident(bearer) == ident(key)
    xff = [(b"x-forwarded-for", b"5.6.7.8, 10.0.0.9")]
    via_proxy = {"headers": xff, "client": ("10.0.0.1", 1)}
    assert ident.peer_address(via_proxy) == "5.6.7.8"
    spoofed = {"headers": xff, "client": ("9.9.9.9", 1)}
    assert ident.peer_address(spoofed) == "9.9.9.9"
    fwd = {"headers": [(b"forwarded", b'for="[2001:db8::1]:443";proto=https, for=10.0.0.2')],
           "client": ("10.0.0.1", 1)}
    assert ident.peer_address(fwd) == "2001:db8::1"


def test_extractors_reject_with_the_right_status():
    with pytest.raises(ExtractionError) as err:
        extract_rows(json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64",
                                             "data": [1, 2, 3]}]}).encode(), 2)
    assert err.value.status == 422 and "needs 4" in str(err.value)
    with pytest.raises(ExtractionError, match="profile has no feature names"):
        extract_rows(b'{"dataframe_records": [{"a": 1}]}', 1)
    _, ex, X = extract_rows(b'{"dataframe_records": [{"b": 2, "a": 1}]}', 2, ["a", "b"])
    assert X.tolist() == [[1.0, 2.0]] and ex.name == "dataframe_records"


def test_degrade_keeps_argmax_and_throttle_refills():
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=50)
    flat = degrade(p, "flatten", strength=0.8)
    assert (flat.argmax(1) == p.argmax(1)).all() and np.allclose(flat.sum(1), 1)
    assert np.ptp(flat, axis=1).max() < np.ptp(p, axis=1).max()
    t = Throttle(rate=2.0, burst=2)
    t.start("c", now=0.0)
    assert t.take("c", now=0.0) == 1 and t.take("c", now=1.0) == 0 and t.take("c", now=1.0) == 0
    assert t.take("c", now=1.0) == 1
