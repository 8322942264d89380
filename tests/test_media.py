"""pbx.media: fetch over HTTP(S), decode with PyAV, confine files, cache.

Audio files are made here by encoding a known tone with PyAV; HTTP tests run a real asyncio server
on 127.0.0.1 whose routes misbehave on purpose (stall, redirect in circles, lie about sizes).
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import pytest

from pbx.errors import MediaError
from pbx.media.decode import _mono, decode_audio
from pbx.media.http import GetExchange, Reply, Url
from pbx.media.loader import MediaLoader

T = TypeVar("T")

FREQ = 440.0
SECONDS = 1.5
SOURCE_RATE = 44100
LEFT, RIGHT = 0.5, 0.25  # the mono mix of a channel mean is 0.375 of full scale


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- audio fixtures -------------------------------------------------------------------------------

def encode(channels: np.ndarray, rate: int, container: str, codec: str, *,
           codec_rate: int | None = None) -> bytes:
    """int16 [channels, samples] -> a file in memory; PyAV converts to the codec's format and rate."""
    layout = {1: "mono", 2: "stereo"}[channels.shape[0]]
    out = io.BytesIO()
    with av.open(out, "w", format=container) as c:
        stream = c.add_stream(codec, rate=codec_rate or rate, layout=layout)
        for start in range(0, channels.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels[:, start:start + 1024]),
                                               format="s16p", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return out.getvalue()


def stereo_tone() -> np.ndarray:
    t = np.arange(round(SOURCE_RATE * SECONDS)) / SOURCE_RATE
    wave = np.sin(2 * np.pi * FREQ * t)
    return np.round(np.stack([LEFT * wave, RIGHT * wave]) * 32767).astype(np.int16)


FORMATS = {  # name -> (container, codec, codec rate, level tolerance dB, min tone purity dB)
    "wav": ("wav", "pcm_s16le", None, 0.1, 60.0),
    "flac": ("flac", "flac", None, 0.1, 60.0),
    "mp3": ("mp3", "libmp3lame", None, 1.0, 30.0),
    "opus": ("ogg", "libopus", 48000, 1.0, 30.0),
}


@pytest.fixture(scope="module")
def tone_files() -> dict[str, bytes]:
    tone = stereo_tone()
    return {name: encode(tone, SOURCE_RATE, container, codec, codec_rate=codec_rate)
            for name, (container, codec, codec_rate, _, _) in FORMATS.items()}


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    n = len(pcm)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(n), 8 * n))
    return float(np.argmax(spectrum) * rate / (8 * n))


def purity_db(pcm: np.ndarray, rate: int, freq: float) -> float:
    """Energy within 20 Hz of ``freq`` against all the rest (edges trimmed: codec fade-in/out)."""
    x = pcm[len(pcm) // 10: -len(pcm) // 10].astype(np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    hz = np.fft.rfftfreq(len(x), 1 / rate)
    near = np.abs(hz - freq) <= 20
    return float(10 * np.log10(power[near].sum() / max(power[~near].sum(), 1e-12)))


def level_db(pcm: np.ndarray) -> float:
    x = pcm[len(pcm) // 10: -len(pcm) // 10].astype(np.float64) / 32768
    return float(20 * np.log10(np.sqrt(np.mean(x * x))))


# --- a misbehaving HTTP server --------------------------------------------------------------------

Route = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    port: int
    scheme: str = "http"
    requests: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"


def body(data: bytes, *, chunked: bool = False) -> Route:
    async def route(writer: asyncio.StreamWriter) -> None:
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for start in range(0, len(data), 1000):
                piece = data[start:start + 1000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
    return route


def redirect(location: str, status: int = 302) -> Route:
    async def route(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 %d Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                     % (status, location.encode()))
    return route


def raw(response: bytes) -> Route:
    async def route(writer: asyncio.StreamWriter) -> None:
        writer.write(response)
    return route


async def stall(writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()  # cancelled when the server shuts down


def claims_length(length: int) -> Route:
    """Announces a huge body, then sends nothing: only an up-front check can fail fast."""
    async def route(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length)
        await writer.drain()
        await stall(writer)
    return route


async def endless_chunks(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (4096, b"\0" * 4096)
    while True:
        writer.write(chunk)
        await writer.drain()  # raises once the client has hung up


def gated(gate: asyncio.Event, then: Route) -> Route:
    async def route(writer: asyncio.StreamWriter) -> None:
        await gate.wait()
        await then(writer)
    return route


@asynccontextmanager
async def serve(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            server.requests[path] += 1
            route = routes.get(path, raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            await route(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # shutdown; finishing normally keeps 3.11's stream callback quiet
            pass
        finally:
            writer.transport.abort()
            handlers.discard(task)

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    server = Server(listener.sockets[0].getsockname()[1], "https" if tls else "http")
    try:
        yield server
    finally:
        listener.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def loader(tmp_path: Path, **options: Any) -> MediaLoader:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    return MediaLoader(media, **{"max_bytes": 1_000_000, "timeout_s": 5.0, "max_seconds": 60.0,
                                 "cache_bytes": 10_000_000, "allow_networks": ["127.0.0.0/8"], **options})


async def load_error(media_loader: MediaLoader, source: str) -> MediaError:
    with pytest.raises(MediaError) as info:
        await media_loader.load(source)
    return info.value


# --- formats --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_over_http_decodes_to_the_tone(tone_files: dict[str, bytes], tmp_path: Path,
                                                    name: str, rate: int) -> None:
    async def main() -> np.ndarray:
        async with serve({"/tone": body(tone_files[name])}) as server:
            return await loader(tmp_path).load(server.url("/tone"), rate)

    pcm = run(main())
    _, _, _, level_tolerance, min_purity = FORMATS[name]
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) / rate - SECONDS) < 0.03  # codec padding is trimmed by the decoders
    assert abs(peak_hz(pcm, rate) - FREQ) < 1.0
    expected_db = 20 * np.log10((LEFT + RIGHT) / 2 / np.sqrt(2))  # channel mean, not FFmpeg's +3 dB mix
    assert abs(level_db(pcm) - expected_db) < level_tolerance
    assert purity_db(pcm, rate, FREQ) > min_purity


def test_downmix_is_the_exact_channel_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    stereo = rng.integers(-32768, 32768, size=(2, 8000), dtype=np.int16)
    data = encode(stereo, 16000, "wav", "pcm_s16le")
    pcm = decode_audio(data, 16000, max_seconds=10)
    expected = np.rint((stereo[0].astype(np.float64) + stereo[1]) / 2).astype(np.int16)
    np.testing.assert_array_equal(pcm, expected)


@pytest.mark.parametrize("codec", ["pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le",
                                   "pcm_f64le"])
def test_every_sample_format_scales_exactly(codec: str) -> None:
    rng = np.random.default_rng(3)
    mono = rng.integers(-32768, 32768, size=(1, 4000), dtype=np.int16)
    pcm = decode_audio(encode(mono, 16000, "wav", codec), 16000, max_seconds=10)
    expected = (mono[0] >> 8) << 8 if codec == "pcm_u8" else mono[0]
    np.testing.assert_array_equal(pcm, expected)


def test_sample_formats_numpy_cannot_read_go_through_swresample() -> None:
    frame = av.AudioFrame(format="s64p", layout="stereo", samples=3)
    frame.sample_rate = 8000
    left = np.array([2**62, -(2**62), 0], np.int64)
    right = np.array([0, -(2**62), 2**61], np.int64)
    frame.planes[0].update(left.tobytes())
    frame.planes[1].update(right.tobytes())
    np.testing.assert_allclose(_mono(frame), [0.25, -0.5, 0.125])


def test_resampled_from_44100_matches_soxr_of_the_mean() -> None:
    import soxr

    tone = stereo_tone()
    pcm = decode_audio(encode(tone, SOURCE_RATE, "wav", "pcm_s16le"), 16000, max_seconds=10)
    mean = (tone[0].astype(np.float32) + tone[1]) / 2 / 32768
    expected = np.rint(soxr.resample(mean, SOURCE_RATE, 16000, quality="VHQ") * 32768)
    assert np.max(np.abs(pcm - expected)) <= 1


def test_unsupported_bytes(tmp_path: Path) -> None:
    async def main() -> MediaError:
        async with serve({"/junk.mp3": body(b"this is not audio at all\n" * 40)}) as server:
            return await load_error(loader(tmp_path), server.url("/junk.mp3"))

    error = run(main())
    assert str(error).startswith("unsupported or corrupt audio: http://127.0.0.1:")
    assert str(error).endswith("/junk.mp3: Invalid data found when processing input")


def test_empty_body_is_unsupported() -> None:
    with pytest.raises(MediaError, match=r"^unsupported or corrupt audio: <0 bytes>: "):
        decode_audio(b"", 16000, max_seconds=10)


def test_playlist_demuxers_are_not_probed(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    (tmp_path / "tone.wav").write_bytes(tone_files["wav"])
    playlist = tmp_path / "list.ffconcat"
    playlist.write_text("ffconcat version 1.0\nfile tone.wav\n")
    with av.open(str(playlist)) as container:  # FFmpeg alone follows the reference...
        assert container.format.name == "concat"
        assert sum(f.samples for f in container.decode(audio=0)) > 0
    with pytest.raises(MediaError, match=r"^unsupported or corrupt audio: .*list\.ffconcat: "):
        decode_audio(playlist, 16000, max_seconds=10)  # ...we refuse the demuxer


def test_decoded_length_is_bounded(tone_files: dict[str, bytes]) -> None:
    with pytest.raises(MediaError, match=r"^tone\.mp3 exceeds the 1-second limit$"):
        decode_audio(tone_files["mp3"], 16000, max_seconds=1.0, name="tone.mp3")


def test_a_corrupt_packet_is_skipped(tone_files: dict[str, bytes]) -> None:
    data = tone_files["mp3"]
    middle = len(data) // 2
    damaged = data[:middle] + bytes(600) + data[middle + 600:]
    pcm = decode_audio(damaged, 16000, max_seconds=10)
    assert 1.3 < len(pcm) / 16000 < 1.5
    assert abs(peak_hz(pcm, 16000) - FREQ) < 1.0


# --- HTTP -----------------------------------------------------------------------------------------

def test_redirects_are_followed(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    async def main() -> tuple[np.ndarray, Server]:
        async with serve({
            "/a": redirect("/b", 301),
            "/b": redirect("c", 307),  # relative to /b
            "/c": lambda w: redirect(server.url("/tone.wav"), 308)(w),
            "/tone.wav": body(tone_files["wav"]),
        }) as server:
            return await loader(tmp_path).load(server.url("/a")), server

    pcm, server = run(main())
    assert len(pcm) == 24000
    assert server.requests == {"/a": 1, "/b": 1, "/c": 1, "/tone.wav": 1}


def test_more_than_three_redirects_fail(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, Server]:
        async with serve({f"/{i}": redirect(f"/{i + 1}") for i in range(5)}) as server:
            return await load_error(loader(tmp_path), server.url("/0")), server

    error, server = run(main())
    assert str(error) == f"too many redirects (more than 3) fetching {server.url('/0')}"
    assert sum(server.requests.values()) == 4


def test_a_redirect_loop_fails(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, Server]:
        async with serve({"/ping": redirect("/pong"), "/pong": redirect("/ping")}) as server:
            return await load_error(loader(tmp_path), server.url("/ping")), server

    error, server = run(main())
    assert str(error) == f"redirect loop at {server.url('/ping')} fetching {server.url('/ping')}"


def test_a_redirect_to_another_scheme_fails(tmp_path: Path) -> None:
    async def main() -> MediaError:
        async with serve({"/x": redirect("ftp://127.0.0.1/tone.wav")}) as server:
            return await load_error(loader(tmp_path), server.url("/x"))

    assert str(run(main())) == "unsupported URL scheme 'ftp' in ftp://127.0.0.1/tone.wav (only http and https)"


def test_http_error_status(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, str]:
        async with serve({}) as server:
            return await load_error(loader(tmp_path), server.url("/missing.wav")), server.url("/missing.wav")

    error, url = run(main())
    assert str(error) == f"HTTP 404 fetching {url}"
    assert error.code == 404 and error.sender == "play"


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/tone.wav"
    error = run(load_error(loader(tmp_path), url))
    assert str(error) == f"connection refused by 127.0.0.1:{port} fetching {url}"


def test_a_stalling_server_times_out(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, str, float]:
        async with serve({"/slow.wav": stall}) as server:
            start = time.monotonic()
            error = await load_error(loader(tmp_path, timeout_s=0.5), server.url("/slow.wav"))
            return error, server.url("/slow.wav"), time.monotonic() - start

    error, url, elapsed = run(main())
    assert str(error) == f"timed out after 0.5 s fetching {url}"
    assert 0.5 <= elapsed < 1.5


def test_connect_timeout(tmp_path: Path) -> None:
    # A listener whose accept queue is full drops further SYNs, so connect() hangs (Linux).
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        url = f"http://127.0.0.1:{port}/tone.wav"
        start = time.monotonic()
        error = run(load_error(loader(tmp_path, connect_timeout_s=0.3), url))
        elapsed = time.monotonic() - start
    assert str(error) == f"timed out after 0.3 s connecting to 127.0.0.1:{port} fetching {url}"
    assert 0.3 <= elapsed < 1.3


def test_content_length_over_the_limit_fails_before_the_body(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, str]:
        async with serve({"/big.wav": claims_length(30_000_000)}) as server:
            return await load_error(loader(tmp_path), server.url("/big.wav")), server.url("/big.wav")

    error, url = run(main())  # the route never sends its body: a timeout here would mean no up-front check
    assert str(error) == f"{url} exceeds the 1000000-byte limit"


def test_streamed_chunked_body_over_the_limit(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, str]:
        async with serve({"/endless.wav": endless_chunks}) as server:
            media = loader(tmp_path, max_bytes=100_000)
            return await load_error(media, server.url("/endless.wav")), server.url("/endless.wav")

    error, url = run(main())
    assert str(error) == f"{url} exceeds the 100000-byte limit"


def test_chunked_body_within_the_limit(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    async def main() -> np.ndarray:
        async with serve({"/tone.flac": body(tone_files["flac"], chunked=True)}) as server:
            return await loader(tmp_path).load(server.url("/tone.flac"))

    assert len(run(main())) == 24000


def test_unreachable_host(tmp_path: Path) -> None:
    error = run(load_error(loader(tmp_path), "http://example.com/ringtone.wav"))
    assert str(error).startswith("cannot reach example.com: ")


def test_server_closes_without_a_response(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, Server]:
        async with serve({"/x": raw(b"")}) as server:
            return await load_error(loader(tmp_path), server.url("/x")), server

    error, server = run(main())
    assert str(error) == (f"127.0.0.1:{server.port} closed the connection without a response "
                          f"fetching {server.url('/x')}")


def test_garbage_response(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, Server]:
        async with serve({"/x": raw(b"SPAM\r\n\r\n")}) as server:
            return await load_error(loader(tmp_path), server.url("/x")), server

    error, server = run(main())
    assert str(error).startswith(f"bad HTTP response from 127.0.0.1:{server.port} fetching "
                                 f"{server.url('/x')}: ")


def test_truncated_body(tmp_path: Path) -> None:
    async def main() -> tuple[MediaError, Server]:
        async with serve({"/x": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")}) as server:
            return await load_error(loader(tmp_path), server.url("/x")), server

    error, server = run(main())
    assert str(error) == (f"bad HTTP response from 127.0.0.1:{server.port} fetching {server.url('/x')}: "
                          "peer closed connection without sending complete message body "
                          "(received 3 bytes, expected 10)")


@pytest.mark.parametrize("source", ["ftp://example.com/a.wav", "data://x", "HTTPX://a/b"])
def test_unsupported_scheme(tmp_path: Path, source: str) -> None:
    scheme = source.split(":")[0].lower()
    error = run(load_error(loader(tmp_path), source))
    assert str(error) == f"unsupported URL scheme {scheme!r} in {source} (only http, https and file)"


@pytest.mark.parametrize(("url", "detail"), [
    ("http://h:99999/", "Port out of range 0-65535"),
    ("http:///x.wav", "no host"),
    (f"http://{'a' * 64}.com/", "encoding with 'idna' codec failed (UnicodeError: label empty or too long)"),
])
def test_bad_urls(url: str, detail: str) -> None:
    with pytest.raises(MediaError) as info:
        Url.parse(url)
    assert str(info.value) == f"bad URL {url!r}: {detail}"


def test_request_bytes() -> None:
    url = Url.parse("http://Example.com:8080/ring tone/é.wav?v=1#frag")
    assert url.authority == "example.com:8080"
    assert GetExchange(url, 10).request_bytes() == (
        b"GET /ring%20tone/%C3%A9.wav?v=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
        b"User-Agent: pypbx/0.1\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n")
    assert Url.parse("https://[::1]/x").authority == "[::1]"


RESPONSE = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")


def test_exchange_at_every_byte_boundary() -> None:
    url = Url.parse("http://h/x")
    for cut in range(1, len(RESPONSE) + 1):  # b"" would mean end of stream
        exchange = GetExchange(url, 100)
        exchange.request_bytes()
        first = exchange.receive_data(RESPONSE[:cut])
        replies = [first] if first is not None else []
        if cut < len(RESPONSE):
            replies.append(exchange.receive_data(RESPONSE[cut:]))
        assert replies == [Reply(200, b"hello world")], cut


def test_exchange_redirect_is_reported_at_its_head() -> None:
    exchange = GetExchange(Url.parse("http://h/x"), 100)
    exchange.request_bytes()
    head = b"HTTP/1.1 302 Found\r\nLocation: /y\r\nContent-Length: 1000000\r\n\r\n"
    assert exchange.receive_data(head) == Reply(302, location="/y")


# --- HTTPS ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pypbx test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_https(tmp_path: Path, tone_files: dict[str, bytes], certificate: tuple[Path, Path]) -> None:
    async def main() -> np.ndarray:
        async with serve({"/tone.ogg": body(tone_files["opus"])}, tls=server_tls(certificate)) as server:
            trusting = ssl.create_default_context(cafile=str(certificate[0]))
            return await loader(tmp_path, ssl_context=trusting).load(server.url("/tone.ogg"))

    assert abs(peak_hz(run(main()), 16000) - FREQ) < 1.0


def test_https_with_an_untrusted_certificate(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    async def main() -> MediaError:
        async with serve({}, tls=server_tls(certificate)) as server:
            return await load_error(loader(tmp_path), server.url("/tone.ogg"))

    assert str(run(main())) == "TLS certificate of 127.0.0.1 rejected: self-signed certificate"


def test_https_to_a_plain_http_server(tmp_path: Path) -> None:
    async def answer_400(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the TLS ClientHello is not HTTP: say so and hang up, as servers do
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    async def main() -> MediaError:
        async with await asyncio.start_server(answer_400, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            return await load_error(loader(tmp_path), f"https://127.0.0.1:{port}/x")

    assert str(run(main())).startswith("TLS handshake with 127.0.0.1 failed: ")


# --- the media directory --------------------------------------------------------------------------

@pytest.fixture
def media(tmp_path: Path, tone_files: dict[str, bytes]) -> MediaLoader:
    media_loader = loader(tmp_path)
    (media_loader.media_dir / "sub").mkdir()
    (media_loader.media_dir / "sub" / "tone.flac").write_bytes(tone_files["flac"])
    (tmp_path / "secret.wav").write_bytes(tone_files["wav"])
    return media_loader


@pytest.mark.parametrize("source", ["sub/tone.flac", "./sub/../sub/tone.flac", "{dir}/sub/tone.flac",
                                    "file://{dir}/sub/tone.flac", "file://localhost{dir}/sub/tone.flac"])
def test_files_inside_the_media_dir(media: MediaLoader, source: str) -> None:
    pcm = run(media.load(source.format(dir=media.media_dir)))
    assert len(pcm) == 24000


@pytest.mark.parametrize("source", ["../secret.wav", "sub/../../secret.wav", "../../../../etc/passwd",
                                    "/etc/passwd", "{tmp}/secret.wav", "file://{tmp}/secret.wav",
                                    "file:///etc/passwd", "escape.wav", "sub/escape-dir/secret.wav"])
def test_files_outside_the_media_dir(media: MediaLoader, source: str) -> None:
    tmp = media.media_dir.parent
    (media.media_dir / "escape.wav").symlink_to(tmp / "secret.wav")
    (media.media_dir / "sub" / "escape-dir").symlink_to(tmp)
    source = source.format(tmp=tmp)
    assert str(run(load_error(media, source))) == f"{source} is outside the media directory"


def test_a_symlink_that_stays_inside_is_fine(media: MediaLoader) -> None:
    (media.media_dir / "alias.flac").symlink_to(media.media_dir / "sub" / "tone.flac")
    assert len(run(media.load("alias.flac"))) == 24000


def test_missing_and_odd_files(media: MediaLoader) -> None:
    assert str(run(load_error(media, "nope.wav"))) == "cannot open nope.wav: No such file or directory"
    assert str(run(load_error(media, "sub"))) == "sub is not a regular file"
    assert str(run(load_error(media, "a\0b"))) == "bad file name 'a\\x00b'"
    assert str(run(load_error(media, "file://host/x.wav"))) == (
        "file URL file://host/x.wav names a host; only local files can be played")


def test_a_media_dir_reached_through_a_symlink(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "tone.wav").write_bytes(tone_files["wav"])
    (tmp_path / "link").symlink_to(real)
    media_loader = MediaLoader(tmp_path / "link")
    assert len(run(media_loader.load(str(tmp_path / "link" / "tone.wav")))) == 24000


# --- the cache ------------------------------------------------------------------------------------

def test_a_cache_hit_skips_the_fetch(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    async def main() -> tuple[list[np.ndarray], Server]:
        async with serve({"/tone.mp3": body(tone_files["mp3"])}) as server:
            media_loader = loader(tmp_path)
            url = server.url("/tone.mp3")
            loads = [await media_loader.load(url), await media_loader.load(url),
                     await media_loader.load(url, 8000)]
            return loads, server

    (first, second, narrow), server = run(main())
    assert second is first
    assert not first.flags.writeable  # shared: nobody may scribble on the cached copy
    assert len(narrow) == 12000
    assert server.requests["/tone.mp3"] == 2  # once per rate


def test_concurrent_loads_share_one_fetch(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    async def main() -> tuple[list[np.ndarray], Server]:
        async with serve({"/tone.wav": body(tone_files["wav"])}) as server:
            media_loader = loader(tmp_path)
            loads = await asyncio.gather(*(media_loader.load(server.url("/tone.wav")) for _ in range(5)))
            return loads, server

    loads, server = run(main())
    assert server.requests["/tone.wav"] == 1
    assert all(pcm is loads[0] for pcm in loads)


def test_a_cancelled_waiter_does_not_cancel_the_others(tmp_path: Path,
                                                      tone_files: dict[str, bytes]) -> None:
    async def main() -> tuple[np.ndarray, Server]:
        gate = asyncio.Event()
        async with serve({"/tone.wav": gated(gate, body(tone_files["wav"]))}) as server:
            media_loader = loader(tmp_path)
            url = server.url("/tone.wav")
            impatient = asyncio.create_task(media_loader.load(url))
            patient = asyncio.create_task(media_loader.load(url))
            while not server.requests["/tone.wav"]:
                await asyncio.sleep(0)  # let the fetch reach the server (yields, no wall-clock wait)
            impatient.cancel()
            gate.set()
            with pytest.raises(asyncio.CancelledError):
                await impatient
            return await patient, server

    pcm, server = run(main())
    assert len(pcm) == 24000 and server.requests["/tone.wav"] == 1


def test_failures_are_not_cached(tmp_path: Path) -> None:
    async def main() -> Server:
        async with serve({}) as server:
            media_loader = loader(tmp_path)
            for _ in range(2):
                await load_error(media_loader, server.url("/missing.wav"))
            return server

    assert run(main()).requests["/missing.wav"] == 2


def test_the_cache_is_bounded_by_bytes(tmp_path: Path, tone_files: dict[str, bytes]) -> None:
    one = 24000 * 2  # bytes of 1.5 s at 16 kHz int16

    async def main() -> tuple[MediaLoader, Server]:
        routes = {f"/{n}": body(tone_files["wav"]) for n in "abc"}
        async with serve(routes) as server:
            media_loader = loader(tmp_path, cache_bytes=2 * one)
            for path in ["/a", "/b", "/a", "/c", "/a", "/b"]:  # c evicts b (a was used more recently)
                await media_loader.load(server.url(path))
            return media_loader, server

    media_loader, server = run(main())
    assert server.requests == {"/a": 1, "/b": 2, "/c": 1}
    assert media_loader.cached_bytes == 2 * one


def test_an_edited_file_is_loaded_again(media: MediaLoader, tone_files: dict[str, bytes]) -> None:
    path = media.media_dir / "sub" / "tone.flac"

    async def main() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first = await media.load("sub/tone.flac")
        again = await media.load("sub/tone.flac")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        return first, again, await media.load("sub/tone.flac")

    first, again, edited = run(main())
    assert again is first and edited is not first
    np.testing.assert_array_equal(edited, first)
