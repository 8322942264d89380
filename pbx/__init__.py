"""pypbx: a voice-call media server for AI voice agents.

The compiled media core is :mod:`pbx.core`; the control plane lives in the other
subpackages of :mod:`pbx`.
"""

__version__ = "0.1.0"
