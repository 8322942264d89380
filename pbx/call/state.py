"""The call's state machine: its states, and which input is allowed in which state.

Rules (the table below is the whole of them; :class:`pbx.call.core.Call` consults nothing else):

- A call starts ``NEW`` (the control WebSocket is open, nothing dialled) and ends ``ENDED`` (the
  ``hangup`` event went out). Every path to ``ENDED`` passes through ``ENDING``: media released, the
  recording being finished, the ``hangup`` event on its way.
- Inputs are the client's commands (by their wire name) and :class:`Signal`\\ s: what the transport
  reports (the far end rings, answers, rejects, hangs up, a transfer ends) and what the call itself
  decides (``END``: a timeout, a kill, a lost client; ``ENDED``: the hangup event is out).
- An input listed in a state's row moves the call to the state it names (often the same one). A
  command missing from its row is refused: one ``error`` event whose message names the state
  (:func:`refusal`), and the call stays where it is. A signal missing from its row is a bug in the
  transport, never the client's doing: :class:`StateError` (``PbxError``) is raised.
- In ``ENDING`` and ``ENDED`` every command is dropped without an error: the hangup event is on its
  way, and nothing may follow it.
- ``invite`` places a call (outbound, or at once on ``/call``); ``accept``, ``ringing`` and
  ``reject`` answer an incoming one. Whether a transport carries a command at all (``ringing`` on
  ``/call`` does not) is the transport's :class:`~pbx.call.transport.TransportProfile`, checked first.
- ``ringing`` with ``earlyMedia`` moves to ``EARLY_MEDIA`` instead of ``RINGING``; so does the far end's
  183 with SDP (``REMOTE_EARLY_MEDIA``). Media commands need a leg: ``EARLY_MEDIA``, ``ANSWERED``.
- ``REJECTED`` in ``NEW`` or ``ACCEPTING`` is an inbound call refused for the application: no decision
  within the webhook's decision timeout (408), or an offer ``accept`` cannot answer (488, 400).
- ``TRANSFER_DONE`` brings a transfer back to ``ANSWERED``; the call then ends by itself if the
  ``refer`` asked for ``autoHangup`` (through ``END``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pbx.errors import StateError


class CallState(enum.Enum):
    NEW = "new"                      # connected; no invite/accept yet
    CALLING = "calling"              # invite sent out; the far end has not answered
    RINGING = "ringing"              # ringing, no media (outbound: 180; inbound: we sent ringing)
    EARLY_MEDIA = "early media"      # ringing with media flowing (183 with SDP)
    ACCEPTING = "accepting"          # accept given; the transport is answering
    ANSWERED = "answered"
    TRANSFERRING = "transferring"    # a refer is under way
    ENDING = "ending"                # hanging up: media released, the hangup event on its way
    ENDED = "ended"                  # the hangup event went out


class Signal(enum.Enum):
    """Inputs that are not commands: reported by the transport, or decided by the call."""

    REMOTE_RINGING = "remote ringing"        # the far end rings (180)
    REMOTE_EARLY_MEDIA = "remote early media"  # the far end sends media before answering (183 + SDP)
    ANSWERED = "answered"                    # the transport connected the call: a leg exists
    CONNECT_FAILED = "connect failed"        # nothing went out (no capacity): back to NEW, the client may retry
    REJECTED = "rejected"                    # the far end refused (4xx-6xx)
    REMOTE_HANGUP = "remote hangup"          # the far end hung up or cancelled
    TRANSFER_DONE = "transfer done"          # a refer finished, whatever its outcome
    END = "end"                              # the call ends: hangup command, timeout, kill, lost client
    ENDED = "ended"                          # the hangup event is out


S = CallState
_MEDIA: Final = ("tts", "play", "interrupt", "mute", "unmute", "dtmf", "addIceCandidate")
_LIVE: Final = (S.NEW, S.CALLING, S.RINGING, S.EARLY_MEDIA, S.ACCEPTING, S.ANSWERED, S.TRANSFERRING)


def _row(*pairs: tuple[str | Signal, CallState], stay: tuple[str, ...] = (),
         state: CallState | None = None) -> Mapping[str | Signal, CallState]:
    row: dict[str | Signal, CallState] = dict(pairs)
    if state is not None:
        row.update((name, state) for name in stay)
    return MappingProxyType(row)


# state -> {input: next state}. "hangup" and END lead to ENDING from every live state.
TABLE: Final[Mapping[CallState, Mapping[str | Signal, CallState]]] = MappingProxyType({
    S.NEW: _row(("invite", S.CALLING), ("accept", S.ACCEPTING), ("ringing", S.RINGING), ("reject", S.ENDING),
                (Signal.REJECTED, S.ENDING), (Signal.REMOTE_HANGUP, S.ENDING), ("hangup", S.ENDING),
                (Signal.END, S.ENDING)),
    S.CALLING: _row((Signal.REMOTE_RINGING, S.RINGING), (Signal.REMOTE_EARLY_MEDIA, S.EARLY_MEDIA),
                    (Signal.ANSWERED, S.ANSWERED), (Signal.CONNECT_FAILED, S.NEW), (Signal.REJECTED, S.ENDING),
                    (Signal.REMOTE_HANGUP, S.ENDING), ("hangup", S.ENDING), (Signal.END, S.ENDING)),
    S.RINGING: _row(("accept", S.ACCEPTING), ("ringing", S.RINGING), ("reject", S.ENDING),
                    (Signal.REMOTE_RINGING, S.RINGING), (Signal.REMOTE_EARLY_MEDIA, S.EARLY_MEDIA),
                    (Signal.ANSWERED, S.ANSWERED), (Signal.REJECTED, S.ENDING), (Signal.REMOTE_HANGUP, S.ENDING),
                    ("hangup", S.ENDING), (Signal.END, S.ENDING)),
    S.EARLY_MEDIA: _row(("accept", S.ACCEPTING), ("ringing", S.EARLY_MEDIA), ("reject", S.ENDING),
                        (Signal.REMOTE_RINGING, S.EARLY_MEDIA), (Signal.REMOTE_EARLY_MEDIA, S.EARLY_MEDIA),
                        (Signal.ANSWERED, S.ANSWERED), (Signal.REJECTED, S.ENDING),
                        (Signal.REMOTE_HANGUP, S.ENDING), ("hangup", S.ENDING), (Signal.END, S.ENDING),
                        stay=_MEDIA, state=S.EARLY_MEDIA),
    S.ACCEPTING: _row((Signal.ANSWERED, S.ANSWERED), (Signal.CONNECT_FAILED, S.NEW), (Signal.REJECTED, S.ENDING),
                      (Signal.REMOTE_HANGUP, S.ENDING), ("hangup", S.ENDING), (Signal.END, S.ENDING)),
    S.ANSWERED: _row(("refer", S.TRANSFERRING), (Signal.REMOTE_HANGUP, S.ENDING), ("hangup", S.ENDING),
                     (Signal.END, S.ENDING), stay=_MEDIA, state=S.ANSWERED),
    S.TRANSFERRING: _row((Signal.TRANSFER_DONE, S.ANSWERED), (Signal.REMOTE_HANGUP, S.ENDING),
                         ("hangup", S.ENDING), (Signal.END, S.ENDING),
                         stay=("interrupt", "mute", "unmute"), state=S.TRANSFERRING),
    S.ENDING: _row((Signal.ENDED, S.ENDED), (Signal.REMOTE_HANGUP, S.ENDING), (Signal.END, S.ENDING)),
    S.ENDED: _row((Signal.REMOTE_HANGUP, S.ENDED), (Signal.END, S.ENDED)),
})

# Why a command is refused, by state: the error message is "<command>: <why>".
WHY: Final[Mapping[CallState, str]] = MappingProxyType({
    S.NEW: "no call is answered yet",
    S.CALLING: "the call is calling, not answered yet",
    S.RINGING: "the call is ringing, not answered yet",
    S.EARLY_MEDIA: "the call is in early media, not answered yet",
    S.ACCEPTING: "the call is being answered",
    S.ANSWERED: "the call is already answered",
    S.TRANSFERRING: "the call is being transferred",
    S.ENDING: "the call is ending",
    S.ENDED: "the call has ended",
})
# Playback commands sent too early say what to do first.
_NEW_HINT: Final = " (send invite or accept first)"
_HINTED: Final = frozenset({"tts", "play", "interrupt"})
_DROPPED: Final = frozenset({S.ENDING, S.ENDED})


def next_state(state: CallState, command: str) -> CallState | None:
    """The state ``command`` moves the call to, or None when ``state`` refuses or drops it."""
    return TABLE[state].get(command)


def dropped(state: CallState) -> bool:
    """Whether commands are dropped without an error in ``state`` (the hangup event is on its way)."""
    return state in _DROPPED


def refusal(state: CallState, command: str) -> str:
    """The ``error`` event's message for a command ``state`` refuses."""
    hint = _NEW_HINT if state is S.NEW and command in _HINTED else ""
    return f"{command}: {WHY[state]}{hint}"


def after_signal(state: CallState, signal: Signal) -> CallState:
    """The state ``signal`` moves the call to; :class:`StateError` if it cannot happen in ``state``."""
    target = TABLE[state].get(signal)
    if target is None:
        raise StateError(f"{signal.value} cannot happen while the call is {state.value}")
    return target


LIVE: Final = frozenset(_LIVE)
