"""The README's copy-paste `monitor.toml` is loaded with the real settings loader, so the
example can never drift from the keys the code accepts, and it does what the README says:
it blocks, and a client is who sends the X-API-Key header."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from monitor.serving.identity import ClientIdentifier
from monitor.serving.policy import EnforcementPolicy
from monitor.settings import MonitorConfig, ServingConfig, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_config() -> str:
    """The ```toml block of the README that starts with ``# monitor.toml``."""
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    found = [b for b in blocks if b.startswith("# monitor.toml\n")]
    assert len(found) == 1, "the README should hold one ```toml block starting '# monitor.toml'"
    return found[0]


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(readme_config())
    return path


def test_readme_config_loads_with_every_table(config_file):
    settings = Settings.load(config_file)  # what `proxy|serve --config` read
    assert set(re.findall(r"^\[(\w+)\]", readme_config(), re.M)) == {"monitor", "serving",
                                                                     "store"}
    assert settings.monitor == MonitorConfig.load(config_file)
    assert settings.serving == ServingConfig.load(config_file)  # the README's Python snippet
    assert settings.monitor.exposure_limit == 0.5
    assert settings.store.scheme == "sqlite"


def test_readme_config_blocks(config_file):
    serving = ServingConfig.load(config_file)
    policy = EnforcementPolicy(serving)
    assert policy.action_for(True, 2.5) == "throttle"
    assert policy.action_for(True, 4.0) == "block"
    assert policy.action_for(False, 9.0) is None
    assert "block" in serving.exposure_actions
    assert ServingConfig().levels("block") == [], "the defaults only log and alert"


def test_readme_names_the_identity_header(config_file):
    serving = ServingConfig.load(config_file)
    assert serving.client_header == ServingConfig().client_header == "x-api-key"
    assert serving.identity_sources == ("header", "peer")
    assert "**`X-API-Key`**" in README.read_text()
    ident = ClientIdentifier(salt="s", header=serving.client_header)
    alice = ident({"headers": [(b"x-api-key", b"alice")], "client": ("10.0.0.5", 1)})
    assert alice == ident.hash_key("alice") and alice.startswith("key-")


def test_readme_custom_response_extractor_reads_the_answer():
    """The README's ``@extractor(outputs=...)`` snippet reads the custom response, so the
    middleware does not call the model again for it."""
    import numpy as np
    import pandas as pd

    from monitor.serving import extractor

    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                 if "outputs=" in b)
    namespace = {"pd": pd, "extractor": extractor}
    exec(textwrap.dedent(block), namespace)  # the snippet is indented in a list item
    records = namespace["records"]
    assert records.matches({"records": [{"a": 1}]})
    answer = records.parse_response({"results": [{"probabilities": [0.2, 0.8]},
                                                 {"probabilities": [0.9, 0.1]}]})
    np.testing.assert_allclose(answer, [[0.2, 0.8], [0.9, 0.1]])
