"""Shared set-up for the benchmarks in this folder: a realistic ~2 KiB alert body,
a small federation (keys plus a signed, verified trust list), the machine
description printed with every run, and small statistics helpers.

Benchmarks print figures and ratios; they never assert. They are run on demand
(``python bench/bench_envelope.py``, ``python bench/bench_receive.py``), not by
the test suite.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any

import nacl
import nacl.bindings

from gateway.envelope import Recipient
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.trustlist import TrustList, admin_entry, assemble, build_list, node_entry, sign_list
from schemas import xb1json
from schemas.examples import example_alert

PAYLOAD_TARGET = 2048

#: Sender first, then up to 20 recipients (node ids must be unique; suffixes are allowed).
NODE_IDS = ("KZ", "KG", "UZ", "TJ", "TM", "AZ", "AM", "GE", "MN", "TR", "AE",
            "DE", "FR", "IT", "PL", "LT", "LV", "EE", "FI", "SE", "NO")

_FILLER = (
    " Further messages from the victim describe a second woman from Taraz held at the same "
    "laundry, shifts of fourteen hours, and a supervisor who speaks Russian and Kazakh."
)


def alert_body(target: int = PAYLOAD_TARGET) -> dict[str, Any]:
    """``example_alert`` with its summary lengthened until its xb1-json is at least
    ``target`` bytes (the example is already about that size; it is never shortened)."""
    body = example_alert()
    while len(xb1json.dumps(body)) < target:
        body["summary"] += _FILLER
    return body


def payload_size(body: dict[str, Any]) -> int:
    return len(xb1json.dumps(body))


@dataclass
class Federation:
    """A sender, ``n`` recipients, and trust list version 1 signed by one admin."""

    sender: NodeKeys
    recipients: list[NodeKeys]
    wire: bytes
    anchor: str
    trust: TrustList

    def recipient_list(self) -> list[Recipient]:
        return [Recipient(r.node, r.current_encryption.kid, r.current_encryption.public)
                for r in self.recipients]


def federation(n_recipients: int, *, now: int | None = None,
               endpoints: dict[str, str] | None = None,
               rings: dict[str, NodeKeys] | None = None) -> Federation:
    """Fresh random keys for ``NODE_IDS[0]`` (sender) and the next ``n_recipients``
    nodes (``rings`` supplies some of them), and a verified trust list naming all."""
    at = int(time.time()) if now is None else now
    ids = NODE_IDS[: n_recipients + 1]
    ring = {n: (rings or {}).get(n) or NodeKeys.generate(n, now=at) for n in ids}
    admin = SigningKeyPair.generate()
    raw = build_list(
        federation="bench", version=1, issued_at=at, expires=at + 30 * 86400, prev=None,
        threshold=1, admins=[admin_entry(admin, "bench administrator")],
        nodes=[node_entry(n, f"node {n}", (endpoints or {}).get(n, f"https://{n.lower()}.example"),
                          ring[n].current_signing, ring[n].current_encryption,
                          not_before=at - 3600, not_after=at + 365 * 86400) for n in ids],
    )
    wire = assemble(raw, [sign_list(raw, admin)])
    anchor = hashlib.sha256(raw).digest()
    trust = TrustList.from_anchor(wire, anchor, at)
    return Federation(ring[ids[0]], [ring[n] for n in ids[1:]], wire, anchor.hex(), trust)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    return [
        f"date      {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"machine   {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}",
        f"python    {sys.version.split()[0]} ({platform.python_implementation()}), "
        f"PyNaCl {nacl.__version__} (bundled libsodium)",
    ]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
