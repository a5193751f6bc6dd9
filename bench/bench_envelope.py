"""Seal and open rates of xb1 envelopes beside the raw libsodium primitives (one run).

    python bench/bench_envelope.py [--quick] [--profile]

Payload: ``schemas.examples.example_alert`` (summary lengthened if needed) as
xb1-json, about 2 KiB. Envelopes go to 1 and to 20 recipients.

The raw-primitive pipelines are what sealing and opening must do at minimum,
called through ``nacl.bindings`` directly (this benchmark is the one place
outside the crypto core allowed to, because it measures it):

* raw seal, N recipients: one XChaCha20-Poly1305 encrypt of the payload (with AAD
  as long as the real header), N ``crypto_box_seal`` of a 32-byte key, SHA-256 of
  the ciphertext, one Ed25519 sign over as many bytes as the real signing input.
* raw open: SHA-256 of the ciphertext, one Ed25519 verify, one
  ``crypto_box_seal_open``, one XChaCha20-Poly1305 decrypt.

Measured against them:

* ``seal(payload=...)``: gateway.envelope.seal given the payload bytes M already
  encoded as xb1-json, as the outbox calls it (it keeps those bytes anyway): adds
  random CEK and nonce, HMAC key commitment, UUIDv7, canonical JSON of the header,
  base64url. This is "sealing" as the target defines it;
* ``seal(body=...)``: the same plus canonical JSON encoding of the body dict;
  also ``seal()+to_wire()``;
* "open steps 1-7": steps 1-5 and 7 of PROTOCOL §3 as open_envelope runs them
  (no replay storage, no schema validation);
* "open_envelope": the full function, steps 1-8 including marshmallow schema
  validation of the alert (replay check omitted: it needs storage and is measured
  by bench_receive.py).

Each case runs in short time slices, interleaved over several rounds; the
median rate per case is reported. Ratios are project rate / raw rate.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nacl.bindings as sodium

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import alert_body, federation, machine_lines, median, payload_size  # noqa: E402

from gateway.envelope import (  # noqa: E402
    AAD_PREFIX,
    SIG_PREFIX,
    Limits,
    open_envelope,
    seal,
    step1_parse_outer,
    step2_parse_header,
    step3_find_sender_key,
    step4_verify_signature,
    step5_check_time,
    step7_decrypt,
)
from schemas import xb1json  # noqa: E402

SEAL_TARGET = 0.70


def timed_rates(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Calls per second of ``fn`` over at least ``seconds`` of wall-clock time (batched to
    keep timer cost low), and the same calls per second of this process's CPU time,
    which other tenants of a shared machine disturb less (reported beside the
    wall-clock figures, never instead of them)."""
    batch, calls = 1, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            cpu = time.process_time() - cpu_start
            return calls / elapsed, calls / cpu if cpu > 0 else float("nan")
        if elapsed < seconds / 20:
            batch *= 2


Cases = dict[str, Callable[[], object]]


def build_cases(n_values: tuple[int, ...]) -> tuple[Cases, dict[str, str]]:
    """Every case to time, by name, and the notes printed under the table."""
    now = int(time.time())
    body = alert_body()
    message = xb1json.dumps(body)
    fed = federation(max(n_values), now=now)
    sender = fed.sender.current_signing
    keys = fed.trust.keys
    cases: Cases = {}
    wire_sizes: dict[int, int] = {}

    # Single primitives on the N=1 sizes.
    one = seal(typ="alert/1", body=body, sender=fed.sender.node, signing_key=sender,
               recipients=fed.recipient_list()[:1], tl=1)
    sk64 = sender.seed + sender.public
    sig_input = SIG_PREFIX + one.protected + hashlib.sha256(one.ciphertext).digest()
    signed = sodium.crypto_sign(sig_input, sk64)
    enc = fed.recipients[0].current_encryption
    cek, nonce = os.urandom(32), os.urandom(24)
    aad = AAD_PREFIX + one.protected
    ct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(message, aad, nonce, cek)
    wrapped = sodium.crypto_box_seal(cek, enc.public)
    cases["Ed25519 sign"] = lambda: sodium.crypto_sign(sig_input, sk64)
    cases["Ed25519 verify"] = lambda: sodium.crypto_sign_open(signed, sender.public)
    cases["crypto_box_seal 32 B"] = lambda: sodium.crypto_box_seal(cek, enc.public)
    cases["crypto_box_seal_open"] = lambda: sodium.crypto_box_seal_open(wrapped, enc.public,
                                                                        enc.secret)
    cases["XChaCha20-Poly1305 enc"] = lambda: sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        message, aad, nonce, cek)
    cases["XChaCha20-Poly1305 dec"] = lambda: sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        ct, aad, nonce, cek)
    cases["SHA-256 of ciphertext"] = lambda: hashlib.sha256(ct).digest()

    limits = Limits()
    for n in n_values:
        recipients = fed.recipient_list()[:n]
        envelope = seal(typ="alert/1", body=body, sender=fed.sender.node, signing_key=sender,
                        recipients=recipients, tl=1)
        wire = envelope.to_wire()
        wire_sizes[n] = len(wire)
        publics = [r.public for r in recipients]
        raw_aad = AAD_PREFIX + envelope.protected
        raw_sig_prefix = SIG_PREFIX + envelope.protected  # signed with SHA-256(C) appended

        def raw_seal(publics=publics, raw_aad=raw_aad, raw_sig_prefix=raw_sig_prefix) -> bytes:
            for public in publics:
                sodium.crypto_box_seal(cek, public)
            c = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(message, raw_aad, nonce, cek)
            return sodium.crypto_sign(raw_sig_prefix + hashlib.sha256(c).digest(), sk64)[:64]

        def real_seal(recipients=recipients):  # type: ignore[no-untyped-def]
            return seal(typ="alert/1", body=body, sender=fed.sender.node, signing_key=sender,
                        recipients=recipients, tl=1)

        def payload_seal(recipients=recipients):  # type: ignore[no-untyped-def]
            return seal(typ="alert/1", payload=message, sender=fed.sender.node,
                        signing_key=sender, recipients=recipients, tl=1)

        # The receiver is the last recipient: the worst case of the to-entry scan.
        receiver = fed.recipients[n - 1]
        entry = envelope.header.to[-1]
        receiver_enc = receiver.current_encryption
        raw_c = envelope.ciphertext
        raw_signed = envelope.signature + SIG_PREFIX + envelope.protected

        def raw_open(entry=entry, raw_c=raw_c, raw_signed=raw_signed, raw_aad=raw_aad,
                     receiver_enc=receiver_enc, env_nonce=envelope.header.nonce) -> bytes:
            sodium.crypto_sign_open(raw_signed + hashlib.sha256(raw_c).digest(), sender.public)
            key = sodium.crypto_box_seal_open(entry.wk, receiver_enc.public, receiver_enc.secret)
            return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(raw_c, raw_aad, env_nonce,
                                                                     key)

        enc_keys = receiver.encryption_keys

        def open_steps(wire=wire, node=receiver.node, enc_keys=enc_keys):  # type: ignore[no-untyped-def]
            at = int(time.time())
            env = step2_parse_header(*step1_parse_outer(wire, limits))
            step4_verify_signature(env, step3_find_sender_key(env, keys, at))
            step5_check_time(env, at, limits)
            return step7_decrypt(env, node, enc_keys)

        def open_full(wire=wire, node=receiver.node, enc_keys=enc_keys):  # type: ignore[no-untyped-def]
            return open_envelope(wire, node=node, trust=keys, enc_keys=enc_keys, limits=limits)

        raw_open()  # fail loudly here, not inside a timing loop, if anything is wrong
        open_steps()
        open_full()
        cases[f"raw seal pipeline N={n}"] = raw_seal
        cases[f"seal(payload) N={n}"] = payload_seal
        cases[f"seal(body) N={n}"] = real_seal
        cases[f"seal()+to_wire() N={n}"] = lambda real_seal=real_seal: real_seal().to_wire()
        cases[f"raw open pipeline N={n}"] = raw_open
        cases[f"open steps 1-7 N={n}"] = open_steps
        cases[f"open_envelope N={n}"] = open_full
    notes = {"payload": f"{payload_size(body)} B xb1-json alert body (example_alert, summary "
                        f"{len(body['summary'])} chars), ciphertext {len(one.ciphertext)} B",
             "wire": ", ".join(f"N={n}: {size} B on the wire" for n, size in wire_sizes.items())}
    return cases, notes


def run(seconds: float, rounds: int) -> dict[str, float]:
    n_values = (1, 20)
    cases, notes = build_cases(n_values)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    cpu_samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            wall, cpu = timed_rates(fn, seconds)
            samples[name].append(wall)
            cpu_samples[name].append(cpu)
    rates = {name: median(values) for name, values in samples.items()}

    print("xb1 envelope benchmark (bench/bench_envelope.py)")
    for line in machine_lines():
        print("  " + line)
    print(f"  payload   {notes['payload']}")
    print(f"  envelopes {notes['wire']}")
    print(f"  timing    {rounds} interleaved rounds x {seconds:.2f} s per case, median reported")
    print()
    print(f"  {'case':<28} {'median/s':>10} {'us/op':>8} {'best/s':>10}")
    for name, value in rates.items():
        print(f"  {name:<28} {value:>10,.0f} {1e6 / value:>8.1f} {max(samples[name]):>10,.0f}")
    print()
    print("  ratios: project rate / raw-primitive pipeline rate, median of the per-round ratios")
    print("  (each round times both back to back, which cancels slow drifts in machine load)")
    for n in n_values:
        for label, raw, target in (
            (f"seal(payload) N={n}", f"raw seal pipeline N={n}", SEAL_TARGET),
            (f"seal(body) N={n}", f"raw seal pipeline N={n}", None),
            (f"seal()+to_wire() N={n}", f"raw seal pipeline N={n}", None),
            (f"open steps 1-7 N={n}", f"raw open pipeline N={n}", None),
            (f"open_envelope N={n}", f"raw open pipeline N={n}", None),
        ):
            ratio = median([a / b for a, b in zip(samples[label], samples[raw], strict=True)])
            verdict = ""
            if target is not None:
                verdict = f"  target >= {target:.0%}: {'met' if ratio >= target else 'MISSED'}"
            print(f"    {label:<26} {ratio:>6.1%}{verdict}")
    print("  the same ratios in process CPU time (the target is judged on the ones above):")
    for n in n_values:
        label, raw = f"seal(payload) N={n}", f"raw seal pipeline N={n}"
        ratios = [a / b for a, b in zip(cpu_samples[label], cpu_samples[raw], strict=True)]
        spread = f"rounds {min(ratios):.1%}-{max(ratios):.1%}"
        print(f"    {label:<26} {median(ratios):>6.1%}  ({spread})")
    return rates


def profile(seconds: float) -> None:
    """cProfile of seal() N=1 and open_envelope N=1, top functions by own time."""
    cases, _ = build_cases((1,))
    for name in ("seal(body) N=1", "open_envelope N=1"):
        fn = cases[name]
        profiler = cProfile.Profile()
        deadline = time.perf_counter() + seconds
        calls = 0
        profiler.enable()
        while time.perf_counter() < deadline:
            fn()
            calls += 1
        profiler.disable()
        print(f"\n  cProfile of {name}: {calls} calls, top 15 by own time")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter run (about 10 s)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile seal() and open_envelope with cProfile")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.quick:
        run(seconds=0.12, rounds=3)
    else:
        run(seconds=0.45, rounds=5)
    if args.profile:
        profile(2.0)
    print(f"\n  total run time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
