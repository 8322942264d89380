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


def test_sip_and_webhook_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[sip]\naddr = "127.0.0.1:5080"\naddr6 = "[::1]:5080"\nexternal_ip = "203.0.113.7"\n'
                    'rtp_ports = [30000, 30100]\n'
                    'rtp_timeout_secs = 5\n[[sip.trunks]]\nname = "carrier"\nproxy = "sip:127.0.0.1:5070"\n'
                    'number_template = "sip:{number}@carrier.example"\nheaders = { X-Account = "42" }\n'
                    '[[sip.accounts]]\nusername = "1001"\nregistrar = "sip:127.0.0.1:5070"\nexpires = 600\n'
                    '[webhook]\nurl = "http://127.0.0.1:9/hook"\ndecision_timeout_secs = 5\n')
    config = load(path)
    assert config.sip.host_port == ("127.0.0.1", 5080) and config.sip.host_port6 == ("::1", 5080)
    assert config.sip.rtp_ports == (30000, 30100) and config.sip.rtp_timeout_secs == 5.0
    trunk = config.sip.trunk_for("+15551234567")
    assert trunk is not None and trunk.uri_for("+15551234567") == "sip:+15551234567@carrier.example"
    assert trunk.headers == {"X-Account": "42"}
    assert config.sip.trunk_for("sip:bob@127.0.0.1") is None          # a URI goes where it says
    assert config.sip.accounts[0].expires == 600
    assert config.webhook.url == "http://127.0.0.1:9/hook" and config.webhook.decision_timeout_secs == 5.0
    assert load(None).sip.addr == "0.0.0.0:5060" and load(None).sip.rtp_ports == (20000, 30000)


@pytest.mark.parametrize(("text", "message"), [
    ('[sip]\naddr = "5060"', "config key 'sip.addr': expected host:port, got '5060'"),
    ('[sip]\nport = 5060', "unknown config key 'sip.port'"),
    ('[sip]\naddr6 = "127.0.0.1:5062"', "config key 'sip.addr6': an IPv6 address"),
    ('[sip]\naddr = "[::]:5060"\naddr6 = "[::1]:5062"', "config key 'sip.addr6': an IPv6 address"),
    ('[sip]\nrtp_ports = [30001, 30000]', "config key 'sip.rtp_ports': expected [low, high]"),
    ('[sip]\nexternal_ip = "nat.example"', "config key 'sip.external_ip': not an IP address: 'nat.example'"),
    ('[sip]\naccept_refer = 1', "config key 'sip.accept_refer': expected bool, got int"),
    ('[sip]\nrtp_timeout_secs = -1', "config key 'sip.rtp_timeout_secs': must be between 0 and 3600 seconds"),
    ('[sip]\nrtp_timeout_secs = "30"', "config key 'sip.rtp_timeout_secs': expected int or float, got str"),
    ('[[sip.trunks]]\nname = "t"', "config key 'sip.trunks[0].proxy' is required"),
    ('[[sip.trunks]]\nname = "t"\nproxy = "127.0.0.1"', "config key 'sip.trunks[0].proxy': expected a sip: URI"),
    ('[[sip.trunks]]\nname = "t"\nproxy = "sip:h"\nnumber_template = "sip:x@h"',
     "config key 'sip.trunks[0].number_template': must contain {number}"),
    ('[[sip.trunks]]\nname = "t"\nproxy = "sip:h"\nheaders = { "X-A" = "1\\r\\nVia: x" }',
     "config key 'sip.trunks[0].headers': 'X-A' is not a valid SIP header"),
    ('[[sip.accounts]]\nusername = "u"\nregistrar = "sip:h"\nexpires = 5',
     "config key 'sip.accounts[0].expires': must be between 60 and 86400 seconds"),
    ('[webhook]\nurl = "ftp://h/x"', "config key 'webhook.url': expected an http or https URL, got 'ftp://h/x'"),
    ('[webhook]\ndecision_timeout_secs = 0', "config key 'webhook.decision_timeout_secs': must be between"),
])
def test_bad_sip_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(message)
