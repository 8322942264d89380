"""The server's SIP port: the address it advertises and a clear error when it cannot open its port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from pbx.server.sipcalls import advertised
from pbx.sip.config import SipConfig


def test_the_advertised_address_is_external_ip_else_the_bound_one() -> None:
    assert advertised(SipConfig(external_ip="203.0.113.7"), "127.0.0.1") == "203.0.113.7"
    assert advertised(SipConfig(), "127.0.0.1") == "127.0.0.1"
    chosen = advertised(SipConfig(), "0.0.0.0")      # the default route's source: asked of the kernel only
    socket.inet_aton(chosen)
    assert chosen != "0.0.0.0"


def test_a_busy_sip_port_stops_the_server_with_a_message_naming_it(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        config = tmp_path / "pypbx.toml"
        config.write_text(f'http_addr = "127.0.0.1:0"\ndata_dir = "{tmp_path}"\n[sip]\naddr = "127.0.0.1:{port}"\n')
        done = subprocess.run([sys.executable, "-m", "pbx", "serve", "--config", str(config)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"cannot open the SIP port 127.0.0.1:{port} ([sip] addr): Address already in use" in done.stderr
