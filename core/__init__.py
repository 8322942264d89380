"""pbx.core: the compiled media kernels (installed from the ``core/`` source folder).

Modules, one kernel each: ``rtp``, ``g711``, ``g722``, ``opus``, ``l16``,
``resample``, ``mixer``, ``jitter``, ``wav``.  Errors are in :mod:`pbx.core.errors`.
Nothing here imports the control plane, asyncio, SIP or JSON.
"""
