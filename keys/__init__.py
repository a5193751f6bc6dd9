"""Node keys and the federation trust list.

This package and ``gateway.envelope`` are the only places that import ``nacl``.
"""
