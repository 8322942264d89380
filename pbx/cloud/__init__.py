"""What the cloud ASR/TTS clients share: connecting (:mod:`.ws`), credentials from the environment
(:mod:`.credentials`), and the streaming loops that turn a provider's WebSocket protocol into an
:class:`~pbx.asr.base.AsrStream` (:mod:`.asr`) or a TTS chunk stream (:mod:`.tts`).

Each provider module holds only its protocol: the URL and headers (request signing), the messages it
sends, and how it reads the provider's frames. Faults are handled here, once for every provider:
refused credentials, a dropped connection, a stall, a malformed frame each become a
:class:`~pbx.errors.ProviderError` with a clear message (and ``code`` where the provider gave one).
"""
