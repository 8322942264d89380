"""The server's SIP port: the address it advertises, a clear error when it cannot open its port, the answer to
a datagram that does not parse."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from pbx.server.sipcalls import advertised
from pbx.server.sipnet import error_response
from pbx.sip.config import SipConfig
from pbx.sip.errors import SipParseError
from pbx.sip.message import Response, parse_message


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


def test_the_answer_to_a_bad_request_with_a_bare_lf_in_a_header_line() -> None:
    """A bare LF ends a line for the answer's reader as it does for the parser: no header value with an LF
    in it (Headers refuses one: this raised InvalidMessage out of the datagram handler; found by
    fuzz/sip_message.py, fuzz/corpus/sip_message/crash-error-response-bare-lf)."""
    data = (b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:j_user@example.com\r\n"
            b"From: sip:caller@example.net;tag=242etr\r\nCall-ID: bare.lf\r\nCSeq: 6 OPTIONS\r\n"
            b"Via: SIP/2.0/UDP fold-and-st\nbroken line\r\nContent-Length: 0\r\n\r\n")
    error = SipParseError("header line without a colon: 'broken line'")
    answer = parse_message(error_response(data, error) or b"")
    assert isinstance(answer, Response) and (answer.status, answer.reason) == (400, "Bad Request")
    assert answer.headers.get_all("Via") == ["SIP/2.0/UDP fold-and-st"]
    assert answer.call_id == "bare.lf"
