"""Our own sans-I/O SIP stack (RFC 3261 and friends): bytes, a source address and the time go in; events,
datagrams to send and the next timer deadline come out. :mod:`~pbx.sip.message` and
:mod:`~pbx.sip.headers` parse and build messages, :mod:`~pbx.sip.stream` frames them off a TCP stream, the
transaction, dialog and user-agent layers sit on top, and :mod:`pbx.server.sipnet` is the only place that
touches sockets or the clock.
"""
