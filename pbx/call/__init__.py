"""The call, without I/O: the state table, the call core, its playback and speech recognition.

Nothing here imports asyncio, websockets or the media engine: the shells in :mod:`pbx.server` feed
a :class:`pbx.call.core.Call` its inputs with the time, and carry out what it asks.
"""
