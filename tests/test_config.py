"""Configuration: embedded defaults, TOML overrides, errors that name the key, ICE from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.config import Config, IceServer, ice_servers_from_env, load
from pbx.errors import ConfigError


def test_defaults_need_no_file() -> None:
    config = load(None)
    assert config.http_addr == "0.0.0.0:8080"
    assert config.host_port == ("0.0.0.0", 8080)
    assert config.directory("recordings") == Path("pypbx-data/recordings")
    assert config.asr_provider == "pocketsphinx" and config.tts_provider == "espeak"


def test_toml_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('http_addr = "127.0.0.1:9000"\nrecordings_dir = "/srv/rec"\ndownload_timeout_secs = 3\n'
                    '[[ice_servers]]\nurls = "stun:127.0.0.1:3478"\n')
    config = load(path)
    assert config.host_port == ("127.0.0.1", 9000)
    assert config.directory("recordings") == Path("/srv/rec")
    assert config.download_timeout_secs == 3.0
    assert config.ice_servers == [IceServer(["stun:127.0.0.1:3478"])]


@pytest.mark.parametrize(("text", "message"), [
    ('http_addr = 8080', "config key 'http_addr': expected str, got int"),
    ('http_addr = "localhost"', "config key 'http_addr': expected host:port, got 'localhost'"),
    ('max_calls = 0', "config key 'max_calls': must be positive, got 0"),
    ('max_calls = true', "config key 'max_calls': expected int, got bool"),
    ('log_level = "loud"', "config key 'log_level': expected debug, info, warning or error, got 'loud'"),
    ('colour = "blue"', "unknown config key 'colour'"),
    ('[[ice_servers]]\nurls = 3', "config key 'ice_servers[0]'.urls: expected a string or a list of strings"),
    ('http_addr = ', "is not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.toml")


def test_ice_from_environment() -> None:
    env = {"PYPBX_STUN_URLS": "stun:a:3478, stun:b:3478", "PYPBX_TURN_URLS": "turn:c:3478",
           "PYPBX_TURN_USERNAME": "u", "PYPBX_TURN_CREDENTIAL": "p"}
    assert ice_servers_from_env(env) == [IceServer(["stun:a:3478", "stun:b:3478"]),
                                         IceServer(["turn:c:3478"], "u", "p")]
    assert ice_servers_from_env({}) is None
    assert Config().ice_servers == []
