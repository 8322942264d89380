"""pbx.core.opus against libopus through opuslib (same system library) on real speech."""

from __future__ import annotations

import numpy as np
import opuslib
import opuslib.api.ctl
import opuslib.api.encoder
import pytest

from pbx.core.errors import CodecError, CoreError
from pbx.core.opus import OpusDecoder, OpusEncoder
from support.audio import espeak_speech, frames, snr_db

RATES = [8000, 16000, 48000]


def speech_frames(rate: int, ms: int = 20, channels: int = 1) -> list[np.ndarray]:
    speech = espeak_speech(rate)
    if channels == 2:  # a second channel that differs: the speech delayed and attenuated
        right = np.concatenate([np.zeros(rate // 100, np.int16), speech[: -(rate // 100)] // 2])
        speech = np.column_stack([speech, right]).reshape(-1)
    return frames(speech, rate * ms // 1000 * channels)


def opuslib_encoder(rate: int, channels: int = 1, *, complexity: int = 5, bitrate: int | None = None,
                    fec: bool = False, loss: int = 0, dtx: bool = False) -> opuslib.Encoder:
    enc = opuslib.Encoder(rate, channels, "voip")
    ctl = opuslib.api.ctl
    # Through encoder_ctl: opuslib 3.0.1's inband_fec property setter drops its value.
    settings = [(ctl.set_complexity, complexity), (ctl.set_inband_fec, int(fec)),
                (ctl.set_packet_loss_perc, loss), (ctl.set_dtx, int(dtx))]
    if bitrate is not None:
        settings.append((ctl.set_bitrate, bitrate))
    for request, value in settings:
        opuslib.api.encoder.encoder_ctl(enc.encoder_state, request, value)
    return enc


def pcm_of(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.int16)


def aligned(reference: np.ndarray, decoded: np.ndarray, lookahead: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Best delay near the encoder lookahead (by correlation) and the two signals lined up."""
    ref = reference[: len(decoded)].astype(np.float64)
    out = decoded.astype(np.float64)
    delays = range(max(lookahead - 8, 0), lookahead + 9)
    delay = max(delays, key=lambda d: float(np.dot(ref[: len(out) - d], out[d:])))
    return delay, reference[: len(decoded) - delay], decoded[delay:]


# -- round trip --------------------------------------------------------------------------------

# Measured SNR / correlation after delay compensation (espeak speech, complexity 5):
# 8 kHz @ 24 kb/s 11.7 dB / 0.966, 16 kHz @ 32 kb/s 11.9 dB / 0.968, 48 kHz @ 64 kb/s 11.0 dB / 0.960.
@pytest.mark.parametrize(("rate", "bitrate"), [(8000, 24000), (16000, 32000), (48000, 64000)])
def test_round_trip_quality(rate: int, bitrate: int) -> None:
    enc = OpusEncoder(rate, bitrate=bitrate)
    dec = OpusDecoder(rate)
    chunks = speech_frames(rate)
    decoded = np.concatenate([dec.decode(enc.encode(f)) for f in chunks])
    speech = np.concatenate(chunks)
    assert decoded.dtype == np.int16
    assert len(decoded) == len(speech)
    delay, ref, out = aligned(speech, decoded, enc.lookahead)
    assert abs(delay - enc.lookahead) <= 4  # the decoded speech lags the input by the fixed lookahead
    assert snr_db(ref, out) >= 9.5
    assert np.corrcoef(ref, out)[0, 1] >= 0.95


@pytest.mark.parametrize("ms", [2.5, 5, 10, 20, 40, 60])
def test_every_frame_duration_round_trips(ms: float) -> None:
    rate = 16000
    size = int(rate * ms / 1000)
    enc = OpusEncoder(rate, bitrate=32000)
    dec = OpusDecoder(rate)
    speech = espeak_speech(rate)[: size * 40]
    decoded = np.concatenate([dec.decode(enc.encode(f)) for f in frames(speech, size)])
    assert len(decoded) == len(speech)
    assert dec.last_packet_duration == size
    _, ref, out = aligned(speech, decoded, enc.lookahead)
    assert np.corrcoef(ref, out)[0, 1] >= 0.8


def test_into_forms_match_allocating_forms() -> None:
    rate = 16000
    enc_a, enc_b = OpusEncoder(rate), OpusEncoder(rate)
    dec_a, dec_b = OpusDecoder(rate), OpusDecoder(rate)
    packet_buf = np.zeros(1500, np.uint8)
    pcm_buf = np.zeros(960, np.int16)
    for f in speech_frames(rate)[:100]:
        packet = enc_a.encode(f)
        n = enc_b.encode_into(f, packet_buf)
        assert packet_buf[:n].tobytes() == packet
        decoded = dec_a.decode(packet)
        m = dec_b.decode_into(packet_buf[:n], pcm_buf)
        assert m == 320
        np.testing.assert_array_equal(pcm_buf[:m], decoded)
    assert dec_b.decode_into(None, pcm_buf) == 320  # loss: as long as the last packet
    np.testing.assert_array_equal(pcm_buf[:320], dec_a.decode(None))


def test_final_range_agrees_between_encoder_and_decoder() -> None:
    enc, dec = OpusEncoder(16000), OpusDecoder(16000)
    for f in speech_frames(16000)[:50]:
        dec.decode(enc.encode(f))
        assert dec.final_range == enc.final_range


# -- interop with opuslib (ctypes over the same libopus) ------------------------------------------

@pytest.mark.parametrize("rate", RATES)
def test_packets_identical_to_opuslib(rate: int) -> None:
    ours = OpusEncoder(rate, complexity=5)
    theirs = opuslib_encoder(rate, complexity=5)
    size = rate // 50
    for f in speech_frames(rate):
        assert ours.encode(f) == theirs.encode(f.tobytes(), size)


def test_packets_identical_to_opuslib_with_settings() -> None:
    rate = 16000
    ours = OpusEncoder(rate, bitrate=20000, complexity=8, fec=True, dtx=True, packet_loss_perc=15)
    theirs = opuslib_encoder(rate, bitrate=20000, complexity=8, fec=True, loss=15, dtx=True)
    silence = [np.zeros(320, np.int16)] * 30
    for f in speech_frames(rate)[:200] + silence:
        assert ours.encode(f) == theirs.encode(f.tobytes(), 320)


def test_stereo_packets_identical_to_opuslib() -> None:
    ours = OpusEncoder(48000, channels=2, bitrate=64000)
    theirs = opuslib_encoder(48000, 2, bitrate=64000)
    dec_ours, dec_theirs = OpusDecoder(48000, 2), opuslib.Decoder(48000, 2)
    for f in speech_frames(48000, channels=2)[:150]:
        packet = ours.encode(f)
        assert packet == theirs.encode(f.tobytes(), 960)
        decoded = dec_ours.decode(packet)
        assert decoded.shape == (1920,)
        np.testing.assert_array_equal(decoded, pcm_of(dec_theirs.decode(packet, 960)))


@pytest.mark.parametrize("rate", RATES)
def test_decoding_identical_to_opuslib_both_ways(rate: int) -> None:
    size = rate // 50
    enc_ours, enc_theirs = OpusEncoder(rate), opuslib_encoder(rate)
    ours_packets = [enc_ours.encode(f) for f in speech_frames(rate)]
    theirs_packets = [enc_theirs.encode(f.tobytes(), size) for f in speech_frames(rate)]
    for packets in (ours_packets, theirs_packets):
        dec_ours, dec_theirs = OpusDecoder(rate), opuslib.Decoder(rate, 1)
        for p in packets:
            np.testing.assert_array_equal(dec_ours.decode(p), pcm_of(dec_theirs.decode(p, size)))


def test_concealment_and_fec_identical_to_opuslib() -> None:
    enc = OpusEncoder(16000, bitrate=24000, fec=True, packet_loss_perc=20)
    packets = [enc.encode(f) for f in speech_frames(16000)[:120]]
    dec_ours, dec_theirs = OpusDecoder(16000), opuslib.Decoder(16000, 1)
    for i, p in enumerate(packets):
        if i % 10 == 5:  # lost: conceal
            np.testing.assert_array_equal(dec_ours.decode(None), pcm_of(dec_theirs.decode(b"", 320)))
        elif i % 10 == 7:  # lost, recovered from the next packet's FEC
            nxt = packets[i + 1]
            np.testing.assert_array_equal(dec_ours.decode(nxt, fec=True),
                                          pcm_of(dec_theirs.decode(nxt, 320, decode_fec=True)))
        else:
            np.testing.assert_array_equal(dec_ours.decode(p), pcm_of(dec_theirs.decode(p, 320)))


# -- loss: concealment and FEC ------------------------------------------------------------------

def test_concealment_continues_the_signal() -> None:
    enc, dec = OpusEncoder(16000), OpusDecoder(16000)
    chunks = speech_frames(16000)
    energies = [float(np.mean(f.astype(np.float64) ** 2)) for f in chunks]
    loud = int(np.argmax(energies[:100]))  # stop in the middle of a voiced stretch
    for f in chunks[: loud + 1]:
        dec.decode(enc.encode(f))
    concealed = dec.decode(None)
    assert concealed.dtype == np.int16
    assert concealed.shape == (320,)
    assert float(np.mean(concealed.astype(np.float64) ** 2)) > 0.01 * energies[loud]
    assert dec.decode(None, frame_size=640).shape == (640,)
    assert dec.decode(b"").shape == (640,)  # an empty payload is a loss too


def test_concealment_length_follows_the_last_packet() -> None:
    enc, dec = OpusEncoder(16000), OpusDecoder(16000)
    assert dec.decode(None).shape == (320,)  # nothing received yet: 20 ms
    for f in speech_frames(16000, ms=10)[:20]:
        dec.decode(enc.encode(f))
    assert dec.decode(None).shape == (160,)


def loss_recovery_snr(fec: bool) -> float:
    """SNR of frames recovered after single losses, against the loss-free decode of the same packets."""
    enc = OpusEncoder(16000, bitrate=24000, fec=True, packet_loss_perc=20)
    packets = [enc.encode(f) for f in speech_frames(16000)]
    clean_dec = OpusDecoder(16000)
    clean = [clean_dec.decode(p) for p in packets]
    lost = set(range(10, len(packets) - 1, 7))
    dec = OpusDecoder(16000)
    recovered, reference = [], []
    for i, p in enumerate(packets):
        if i in lost:
            recovered.append(dec.decode(packets[i + 1], fec=True) if fec else dec.decode(None))
            reference.append(clean[i])
        else:
            dec.decode(p)
    return snr_db(np.concatenate(reference), np.concatenate(recovered))


def test_fec_recovers_a_lost_frame_better_than_concealment() -> None:
    # Measured: FEC 7.8 dB, concealment 1.6 dB.
    fec, plc = loss_recovery_snr(fec=True), loss_recovery_snr(fec=False)
    assert fec >= 5.0
    assert fec >= plc + 4.0


# -- settings --------------------------------------------------------------------------------------

def test_dtx_sends_tiny_packets_in_silence() -> None:
    silence = np.zeros(320, np.int16)
    speech = speech_frames(16000)[:50]
    with_dtx, without = OpusEncoder(16000, dtx=True), OpusEncoder(16000)
    assert with_dtx.dtx and not without.dtx
    for f in speech:
        with_dtx.encode(f)
        without.encode(f)
    sizes_dtx = [len(with_dtx.encode(silence)) for _ in range(60)]
    sizes_plain = [len(without.encode(silence)) for _ in range(60)]
    # Measured: 9 normal packets, then 1-byte packets with a refresh every 400 ms.
    tiny = [s <= 2 for s in sizes_dtx[10:]]
    assert sum(tiny) >= 0.9 * len(tiny)
    assert min(sizes_plain) > 2


def test_complexity_is_applied() -> None:
    enc = OpusEncoder(16000, complexity=2)
    assert enc.complexity == 2
    enc.complexity = 9
    assert enc.complexity == 9
    # The setting reaches libopus: packets match opuslib at the same complexity, not at another.
    chunks = speech_frames(16000)[:100]
    low, high = OpusEncoder(16000, complexity=0), opuslib_encoder(16000, complexity=10)
    same = opuslib_encoder(16000, complexity=0)
    ours = [low.encode(f) for f in chunks]
    assert ours == [same.encode(f.tobytes(), 320) for f in chunks]
    assert ours != [high.encode(f.tobytes(), 320) for f in chunks]


def test_settings_read_back() -> None:
    enc = OpusEncoder(16000, bitrate=24000, fec=True, dtx=True, packet_loss_perc=10)
    assert (enc.bitrate, enc.fec, enc.dtx, enc.packet_loss_perc) == (24000, True, True, 10)
    assert (enc.sample_rate, enc.channels) == (16000, 1)
    enc.bitrate = 16000
    enc.fec = False
    enc.dtx = False
    enc.packet_loss_perc = 0
    assert (enc.bitrate, enc.fec, enc.dtx, enc.packet_loss_perc) == (16000, False, False, 0)
    enc.bitrate = None  # automatic: libopus picks one
    assert 6000 <= enc.bitrate <= 64000
    assert enc.lookahead == 104  # 16 kHz: 2.5 ms + 4 ms of SILK/CELT delay compensation


def test_reset_forgets_the_signal() -> None:
    enc, fresh = OpusEncoder(16000), OpusEncoder(16000)
    chunks = speech_frames(16000)[:40]
    for f in chunks:
        enc.encode(f)
    enc.reset()
    assert [enc.encode(f) for f in chunks] == [fresh.encode(f) for f in chunks]
    dec, fresh_dec = OpusDecoder(16000), OpusDecoder(16000)
    packets = [fresh.encode(f) for f in chunks]
    for p in packets:
        dec.decode(p)
    dec.reset()
    for p in packets:
        np.testing.assert_array_equal(dec.decode(p), fresh_dec.decode(p))


@pytest.mark.parametrize("rate", [12000, 24000])
def test_other_libopus_rates(rate: int) -> None:
    enc, dec = OpusEncoder(rate), OpusDecoder(rate)
    theirs = opuslib_encoder(rate)
    for f in speech_frames(rate)[:50]:
        packet = enc.encode(f)
        assert packet == theirs.encode(f.tobytes(), rate // 50)
        assert dec.decode(packet).shape == (rate // 50,)


# -- errors ----------------------------------------------------------------------------------------

def test_corrupt_packet_raises_codec_error() -> None:
    dec = OpusDecoder(16000)
    with pytest.raises(CodecError, match=r"^corrupted stream$") as info:
        dec.decode(b"\x03")  # code 3 (arbitrary frame count) without its count byte
    assert info.value.code == -4
    assert isinstance(info.value, CoreError)
    with pytest.raises(CodecError, match=r"^corrupted stream$"):
        dec.decode_into(b"\x03", np.zeros(320, np.int16), frame_size=320)


def test_libopus_errors_carry_its_message() -> None:
    enc, dec = OpusEncoder(16000), OpusDecoder(16000)
    packet_40ms = enc.encode(np.zeros(640, np.int16))
    with pytest.raises(CodecError, match=r"^buffer too small$") as info:
        dec.decode_into(packet_40ms, np.zeros(320, np.int16), frame_size=320)
    assert info.value.code == -2
    with pytest.raises(CodecError, match=r"^buffer too small$"):
        enc.encode_into(np.zeros(320, np.int16), np.zeros(0, np.uint8))


@pytest.mark.parametrize(
    ("rate", "size", "message"),
    [
        (16000, 100, "invalid Opus frame size 100 at 16000 Hz: use 2.5, 5, 10, 20, 40 or 60 ms "
                     "(40, 80, 160, 320, 640 or 960 samples per channel)"),
        (8000, 0, "invalid Opus frame size 0 at 8000 Hz: use 2.5, 5, 10, 20, 40 or 60 ms "
                  "(20, 40, 80, 160, 320 or 480 samples per channel)"),
        (48000, 3840, "invalid Opus frame size 3840 at 48000 Hz: use 2.5, 5, 10, 20, 40 or 60 ms "
                      "(120, 240, 480, 960, 1920 or 2880 samples per channel)"),
    ],
)
def test_invalid_frame_size_message(rate: int, size: int, message: str) -> None:
    enc, dec = OpusEncoder(rate), OpusDecoder(rate)
    with pytest.raises(ValueError) as info:
        enc.encode(np.zeros(size, np.int16))
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        enc.encode_into(np.zeros(size, np.int16), np.zeros(100, np.uint8))
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        dec.decode(None, frame_size=size)
    assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        dec.decode_into(None, np.zeros(4000, np.int16), frame_size=size)
    assert str(info.value) == message


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^unsupported Opus sample rate 44100 Hz \(use 8000, 12000, 16000, "
                                         r"24000 or 48000\)$"):
        OpusEncoder(44100)
    with pytest.raises(ValueError, match=r"^unsupported Opus sample rate 22050 Hz"):
        OpusDecoder(22050)
    with pytest.raises(ValueError, match=r"^Opus channels must be 1 or 2, got 3$"):
        OpusEncoder(16000, channels=3)
    with pytest.raises(ValueError, match=r"^unknown Opus application 'music' \(use 'voip', 'audio' or "
                                         r"'restricted_lowdelay'\)$"):
        OpusEncoder(16000, application="music")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Opus complexity must be 0\.\.10, got 11$"):
        OpusEncoder(16000, complexity=11)
    with pytest.raises(ValueError, match=r"^Opus bitrate must be None or 500\.\.512000 bits/s, got 100$"):
        OpusEncoder(16000, bitrate=100)
    with pytest.raises(ValueError, match=r"^Opus packet_loss_perc must be 0\.\.100, got 101$"):
        OpusEncoder(16000).packet_loss_perc = 101
    with pytest.raises(ValueError, match=r"^pcm holds 641 samples, not a whole number of 2-channel frames$"):
        OpusEncoder(16000, channels=2).encode(np.zeros(641, np.int16))
    with pytest.raises(ValueError, match=r"^out holds 300 samples, the frame needs 320$"):
        OpusDecoder(16000).decode_into(None, np.zeros(300, np.int16))


def test_applications_create_distinct_encoders() -> None:
    f = speech_frames(48000)[60]
    packets = {app: OpusEncoder(48000, application=app).encode(f)
               for app in ("voip", "audio", "restricted_lowdelay")}
    assert len(set(packets.values())) == 3
    lowdelay = OpusEncoder(48000, application="restricted_lowdelay")
    assert lowdelay.lookahead == 120  # CELT only: 2.5 ms, no SILK delay compensation

