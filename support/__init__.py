"""Audio fixtures (espeak-ng speech, tones, WAV reading, swept-sine measurement) and the
pure-Python/numpy reference ("oracle") of each kernel, shared by tests/ and bench/; not
installed with the package."""
