"""Per-agency adapters between local formats and the xb1 standard.

Adapters depend only on ``schemas``. None ships yet; they will plug in through
the ``xb_gateway.adapters`` entry-point group without changes to the gateway.
"""
