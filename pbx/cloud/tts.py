"""A provider's streaming synthesis protocol as a stream of :class:`~pbx.tts.base.TtsChunk`, faults included.

A provider module writes a :class:`TtsProtocol`: sans-I/O, one instance per text. It says where to
connect and what to send first, and reads each frame into a :class:`TtsFrame`: PCM (at the
protocol's ``rate``), word marks, replies to send, and whether the audio is complete.
:func:`synthesize_ws` does the I/O and turns every fault into a ProviderError (``sender: "tts"``),
which ends the item's track with ``trackEnd`` after an ``error`` event:

- the provider's own error frames (raised by the protocol, with its code);
- a malformed frame (the synthesis stops: audio after a garbled frame cannot be trusted);
- the connection closing before the protocol saw the end;
- a stall: no frame for ``context.timeout_s``.

Audio is resampled from the protocol's rate to the request's, word marks with it.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import soxr  # type: ignore[import-untyped]
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from pbx.cloud.asr import MalformedFrame, Message
from pbx.cloud.ws import ProviderContext, close_quietly, open_websocket
from pbx.errors import ProviderError
from pbx.tts.base import TtsChunk, TtsRequest, WordMark


@dataclass(frozen=True, slots=True)
class TtsFrame:
    pcm: bytes = b""                        # s16le mono at the protocol's rate
    words: tuple[WordMark, ...] = ()        # at the protocol's rate, from the start of the text's audio
    replies: tuple[Message, ...] = ()       # messages to send in answer
    done: bool = False                      # the audio is complete


class TtsProtocol(abc.ABC):
    """The synthesis of one text by one provider, without I/O."""

    provider: str
    rate: int                               # the PCM rate of the frames

    @abc.abstractmethod
    def url(self) -> str: ...

    def headers(self) -> dict[str, str]:
        return {}

    @abc.abstractmethod
    def opening(self) -> list[Message]:
        """Messages sent right after connecting (the text, or a task start)."""

    @abc.abstractmethod
    def received(self, message: Message) -> TtsFrame:
        """Raises ProviderError for the provider's error frames, MalformedFrame for garbage."""


async def synthesize_ws(protocol: TtsProtocol, request: TtsRequest, context: ProviderContext
                        ) -> AsyncIterator[TtsChunk]:
    name = protocol.provider
    ws = await open_websocket(protocol.url(), sender="tts", provider=name, context=context,
                              headers=protocol.headers())
    resampler = None if protocol.rate == request.samplerate else soxr.ResampleStream(
        protocol.rate, request.samplerate, 1, dtype="int16", quality="HQ")
    scale = request.samplerate / protocol.rate
    carry = b""                              # an odd byte split across frames
    try:
        for message in protocol.opening():
            await _send(ws, message, name, context)
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), context.timeout_s)
            except TimeoutError:
                raise ProviderError("tts", f"{name} stalled: nothing for {context.timeout_s:g} s") from None
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = f"code {code}{': ' + exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else ''}" \
                    if code is not None else "no close frame"
                raise ProviderError("tts", f"{name} closed the connection before the audio was complete "
                                           f"({reason})", code) from None
            try:
                frame = protocol.received(message)
            except MalformedFrame as exc:
                raise ProviderError("tts", f"{name} sent a malformed frame: {exc}") from None
            for reply in frame.replies:
                await _send(ws, reply, name, context)
            data = carry + frame.pcm
            cut = len(data) // 2 * 2
            carry = data[cut:]
            pcm = np.frombuffer(data[:cut], dtype="<i2").astype(np.int16)
            if resampler is not None:
                pcm = resampler.resample_chunk(pcm, last=frame.done)
            words = tuple(WordMark(round(w.sample * scale), w.index) for w in frame.words)
            if len(pcm) or words:
                yield TtsChunk(pcm, words)
            if frame.done:
                return
    finally:
        await close_quietly(ws)


async def _send(ws: ClientConnection, message: Message, name: str, context: ProviderContext) -> None:
    try:
        await asyncio.wait_for(ws.send(message), context.timeout_s)
    except TimeoutError:
        raise ProviderError("tts", f"{name} stopped reading (nothing sent for {context.timeout_s:g} s)") from None
    except ConnectionClosed as exc:
        raise ProviderError("tts", f"{name} closed the connection",
                            exc.rcvd.code if exc.rcvd is not None else None) from None
