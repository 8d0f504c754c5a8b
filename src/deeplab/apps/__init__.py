"""The applications over the library: the ``deeplab`` command (``cli``) and what its commands
drive: ``predict`` (files in, PNGs out), ``evaluate`` (JSON + plots), ``refine`` (the CRF on
files), ``demo`` + ``report`` (the HTML demonstration), ``plots`` and ``viz`` (pictures)."""
