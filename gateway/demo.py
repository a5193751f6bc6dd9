"""``gateway demo``: a three-node federation (KZ, KG, UZ) on this machine.

Each node gets fresh sealed keys, its own SQLite database and its own gunicorn
server on 127.0.0.1. Three administrators (one per state) sign trust list
version 1 with threshold 2; every node pins it by hash. Agencies submit alerts
through the real agency API; each node's dispatcher seals and posts them over
HTTP; the receivers verify, decrypt, store and answer with signed receipts,
which the senders verify. At the end the demo checks every inbox: each
envelope sent must be there exactly once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import requests

from gateway.audit import log as audit
from gateway.config import load_settings, write_instance_file
from gateway.dispatcher import Dispatcher
from gateway.envelope import ReceiptInvalid, step1_parse_outer, step2_parse_header, verify_receipt
from gateway.errors import GatewayError
from gateway.models import Delivery, InboundMessage
from gateway.node import Node
from gateway.policy import POLICY_FILE
from gateway.tokens import issue
from keys.fingerprint import fingerprint
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.sealed import MEMLIMIT_INTERACTIVE, OPSLIMIT_INTERACTIVE, atomic_write
from keys.trustlist import admin_entry, assemble, build_list, node_entry, sign_list
from schemas.examples import example_alert, example_alert_tajik_cyrillic, example_alert_uzbek_latin
from schemas.registry import MESSAGE_TYPES

NODES = {"KZ": "Kazakhstan", "KG": "Kyrgyzstan", "UZ": "Uzbekistan"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Say:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)


def _demo_policy(node_id: str) -> str:
    """Each demo node's policy.toml: a bilateral agreement with each other member for
    every message type, both ways, and a retention limit (docs/policy.md)."""
    lines = ["# Demo policy: every exchange between the demo members is agreed.", "version = 1"]
    for peer in NODES:
        if peer != node_id:
            lines += [
                "",
                "[[agreement]]",
                f'id = "demo-{node_id}-{peer}"',
                f'peer = "{peer}"',
                f"types = [{', '.join(repr(t).replace(chr(39), chr(34)) for t in MESSAGE_TYPES)}]",
                'direction = "both"',
            ]
    lines += ["", "[retention]", '"alert/1" = 730']
    return "\n".join(lines) + "\n"


def _start_server(instance: Path, port: int, passphrase: str) -> subprocess.Popen[bytes]:
    # The node's own gunicorn settings (request limits, no control socket, the check
    # that the app loads before it listens), a smaller server than a real node's.
    env = dict(os.environ, GATEWAY_INSTANCE=str(instance), GATEWAY_KEY_PASSPHRASE=passphrase)
    log = (instance / "server.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:gateway.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--worker-class",
            "gateway.gunicorn_worker.ThreadWorker",
            "--log-level",
            "warning",
            "gateway.wsgi:app",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _failed(f"the node server for {url} exited with code {process.returncode}", log)
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise _failed(f"the node server for {url} did not become ready in 30 s", log)


def _failed(what: str, log: Path) -> GatewayError:
    """The demo's error, with the end of the server's log (which goes with the working
    folder): the reason is there, e.g. a port another program took meanwhile."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        lines = []
    said = " | ".join(line.strip() for line in lines[-3:])
    return GatewayError(
        "demo-failed",
        f"{what}" + (f"; its log ends: {said}" if said else "") + "; run the demo again",
    )


# The demo's nodes are its own: settings of a node this shell is set up for
# (GATEWAY_DATABASE_URL above all) must not reach them, nor they that node's database.
@contextmanager
def _without_gateway_settings() -> Iterator[None]:
    saved = {name: value for name, value in os.environ.items() if name.startswith("GATEWAY_")}
    if saved:  # on standard error, so that --json prints JSON alone
        print(
            f"demo: ignoring {', '.join(sorted(saved))} from this shell: the demo's nodes "
            "are its own",
            file=sys.stderr,
            flush=True,
        )
    for name in saved:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(saved)


class _Stopped(Exception):
    """The demo was told to stop (SIGTERM, SIGHUP): it stops what it started first."""


@contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the demo as Ctrl-C does, through its clean-up (servers
    stopped, working folder removed), instead of killing it with its servers left
    running. Only where handlers can be set (the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        raise _Stopped(signal.Signals(signum).name)

    before = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _gateway_command() -> str:
    """How to run ``gateway`` from where this one runs: its full path when the folder it
    is in (a virtual environment's bin) is not on PATH; ``python -m gateway`` when it
    was started so."""
    here = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if here is not None and here.name == "__main__.py":  # python -m gateway
        return f"{sys.executable} -m gateway"
    if here is None or here.name != "gateway":
        return "gateway"
    found = shutil.which("gateway")
    return "gateway" if found and Path(found).resolve() == here.resolve() else str(here.absolute())


def run_demo(*, as_json: bool = False, keep: str | None = None) -> dict[str, Any]:
    say = _Say(as_json)
    try:
        with _stopped_by_signals(), _without_gateway_settings():
            return _run(say, keep)
    except _Stopped as e:
        removed = "" if keep else " and its working folder removed"
        raise GatewayError(
            "demo-stopped", f"stopped by {e}; its servers were stopped{removed}"
        ) from None


def _run(say: _Say, keep: str | None) -> dict[str, Any]:
    started = time.monotonic()
    with ExitStack() as stack:
        if keep:
            root = Path(keep)
            root.mkdir(parents=True, exist_ok=True)
            if any(root.iterdir()):
                raise GatewayError(
                    "file-exists",
                    f"--keep {keep}: the folder is not empty (a demo kept there before?); "
                    "name a new or empty folder",
                )
        else:
            root = Path(tempfile.mkdtemp(prefix="xb1-demo-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        now = int(time.time())

        say("xb1 gateway demo: three national nodes on this machine, real HTTP on 127.0.0.1")
        say(f"Working folder: {root}")
        say()
        say(
            "1. Each state creates its node keys "
            "(sealed at rest with argon2id + XChaCha20-Poly1305)"
        )
        passphrases = {n: secrets.token_urlsafe(16) for n in NODES}
        ports = {n: _free_port() for n in NODES}
        ring = {}
        for node_id in NODES:
            instance = root / node_id
            instance.mkdir(mode=0o700)
            keys = NodeKeys.generate(node_id, now=now)
            keys.save(
                instance / "node-keys.json",
                passphrases[node_id],
                opslimit=OPSLIMIT_INTERACTIVE,
                memlimit=MEMLIMIT_INTERACTIVE,
            )
            ring[node_id] = keys
            say(f"   {node_id}: signing key {keys.current_signing.kid}")
            say(f"       fingerprint {fingerprint(keys.current_signing.public)}")

        say()
        say("2. Three administrators (one per state) sign trust list version 1, threshold 2 of 3")
        admins = {n: SigningKeyPair.generate() for n in NODES}
        raw = build_list(
            federation="central-asia-demo",
            version=1,
            issued_at=now,
            expires=now + 30 * 86400,
            prev=None,
            threshold=2,
            admins=[admin_entry(admins[n], f"{NODES[n]} national administrator") for n in NODES],
            nodes=[
                node_entry(
                    n,
                    NODES[n],
                    f"http://127.0.0.1:{ports[n]}",
                    ring[n].current_signing,
                    ring[n].current_encryption,
                    not_before=now - 60,
                    not_after=now + 365 * 86400,
                )
                for n in NODES
            ],
        )
        wire = assemble(raw, [sign_list(raw, admins[n]) for n in NODES])
        anchor = hashlib.sha256(raw).hexdigest()
        say(f"   anchor (SHA-256 of version 1, compared out of band): {anchor}")

        nodes: dict[str, Node] = {}
        for node_id in NODES:
            instance = root / node_id
            write_instance_file(
                instance,
                {
                    "node": node_id,
                    "trust_anchor": anchor,
                    "backoff_base": 0.5,
                    "backoff_cap": 2.0,
                    "peer_timeout": 5.0,
                    "dispatch_interval": 0.2,
                    # Plain HTTP on 127.0.0.1 only; real endpoints must be https://.
                    "allow_insecure_http": True,
                },
            )
            (instance / POLICY_FILE).write_text(_demo_policy(node_id), encoding="utf-8")
            if keep:
                # So the kept nodes can be opened afterwards (demo keys only).
                atomic_write(instance / "demo-passphrase", passphrases[node_id].encode())
            node = Node(load_settings(instance), keys=ring[node_id])
            stack.callback(node.engine.dispose)
            node.install_trust_list(wire)
            nodes[node_id] = node

        say()
        say("3. Each node starts its gunicorn server")
        servers = {}
        for node_id in NODES:
            servers[node_id] = _start_server(root / node_id, ports[node_id], passphrases[node_id])
            stack.callback(_stop, servers[node_id])
        deadline = time.monotonic() + 30
        for node_id in NODES:
            url = f"http://127.0.0.1:{ports[node_id]}"
            _wait_ready(url, servers[node_id], root / node_id / "server.log", deadline)
            say(f"   {node_id} listening on http://127.0.0.1:{ports[node_id]}")

        tokens = {}
        agencies = {"KZ": "kz-police", "KG": "kg-mvd", "UZ": "uz-labour-inspectorate"}
        for node_id, node in nodes.items():
            with node.sessions() as session:
                tokens[node_id] = issue(session, agencies[node_id], "demo").secret
                session.commit()

        def submit(sender: str, to: list[str], body: dict[str, Any], title: str) -> str:
            answer = requests.post(
                f"http://127.0.0.1:{ports[sender]}/api/v1/messages",
                json={"typ": "alert/1", "body": body, "to": to},
                headers={"Authorization": f"Bearer {tokens[sender]}"},
                timeout=10,
            )
            if answer.status_code != 202:
                raise GatewayError(
                    "demo-failed", f"{sender} refused the submission: {answer.text[:500]}"
                )
            message_id = answer.json()["id"]
            say(f"   {agencies[sender]} ({sender}) → {', '.join(to)}: {title}")
            say(f"       message {message_id} stored and queued")
            return str(message_id)

        say()
        say("4. Agencies submit alerts through their node's agency API")
        exchanges = [
            ("KZ", ["KG", "UZ"], example_alert(), "trafficked person, recruited via Telegram"),
            ("KG", ["KZ"], example_alert_tajik_cyrillic(), "alert in Tajik Cyrillic"),
            ("UZ", ["KZ", "KG"], example_alert_uzbek_latin(), "alert in Uzbek Latin"),
        ]
        sent_ids = [
            (sender, to, submit(sender, to, body, title)) for sender, to, body, title in exchanges
        ]

        say()
        say("5. Dispatchers seal and post the envelopes; receivers answer with signed receipts")
        for node_id, node in nodes.items():
            Dispatcher(node, worker=f"demo-{node_id}").run(until_idle=True, stop_after=20)

        summary_messages = []
        delivered = receipts_verified = sent = lost = duplicates = 0
        for sender, _to, message_id in sent_ids:
            node = nodes[sender]
            trust_list = node.trust()
            with node.sessions() as session:
                deliveries = session.query(Delivery).filter_by(message_id=message_id).all()
                for delivery in deliveries:
                    sent += 1
                    envelope = step2_parse_header(
                        *step1_parse_outer(delivery.envelope.wire, node.limits)
                    )
                    verified = False
                    shown = "MISSING"
                    if delivery.receipt:
                        try:
                            receipt = verify_receipt(
                                delivery.receipt,
                                trust=trust_list.keys,
                                now=int(time.time()),
                                envelope=envelope,
                            )
                            verified = receipt.accepted
                            shown = "a REFUSAL" if not verified else shown
                        except ReceiptInvalid as e:
                            shown = f"INVALID ({e})"
                    delivered += delivery.state == "delivered"
                    receipts_verified += verified
                    with nodes[delivery.recipient].sessions() as peer_session:
                        copies = (
                            peer_session.query(InboundMessage)
                            .filter_by(sender=sender, envelope_id=delivery.envelope_id)
                            .count()
                        )
                    lost += copies == 0
                    duplicates += max(0, copies - 1)
                    summary_messages.append(
                        {
                            "id": message_id,
                            "from": sender,
                            "to": delivery.recipient,
                            "state": delivery.state,
                            "attempts": delivery.attempts,
                            "receipt_verified": verified,
                            "copies_in_inbox": copies,
                        }
                    )
                    say(
                        f"   {sender} → {delivery.recipient}: {delivery.state} after "
                        f"{delivery.attempts} attempt(s); receipt "
                        + (f"signed by {delivery.recipient} and verified" if verified else shown)
                        + f"; in {delivery.recipient}'s inbox {copies} time(s)"
                    )

        say()
        say("6. Receivers read their inbox through the agency API")
        for node_id in NODES:
            answer = requests.get(
                f"http://127.0.0.1:{ports[node_id]}/api/v1/inbox",
                headers={
                    "Authorization": f"Bearer {tokens[node_id]}",
                    "X-Justification": "demo: reading alerts received from partner states",
                },
                timeout=10,
            )
            for entry in answer.json()["messages"]:
                subject = entry["body"]["subjects"][0]["names"][0]
                say(
                    f"   {node_id} inbox: {entry['typ']} from {entry['sender']}, "
                    f"{entry['body']['kind']}, subject {subject['original']} "
                    f"({subject['latin']})"
                )

        say()
        say("7. Each node signs a checkpoint of its audit log (metadata and hashes only)")
        audit_sizes = {}
        for node_id, node in nodes.items():
            made = audit.checkpoint(node)
            audit_sizes[node_id] = made.size if made else 0
            shown = base64.b64encode(made.root).decode() if made else "-"
            say(f"   {node_id}: {audit_sizes[node_id]} entries, root {shown}")

        elapsed = round(time.monotonic() - started, 2)
        say()
        say(
            f"Summary: {sent} deliveries, {delivered} delivered, {receipts_verified} receipts "
            f"verified, {lost} lost, {duplicates} duplicated, in {elapsed}s"
        )
        command = _gateway_command()
        if keep:
            say(f"Kept in {root}. To look inside a node, e.g. KZ:")
            say(f"  {command} --instance {root}/KZ outbox list")
            say(
                f"  GATEWAY_KEY_PASSPHRASE=$(cat {root}/KZ/demo-passphrase) "
                f"{command} --instance {root}/KZ keys show"
            )
        else:
            say(f"To keep the nodes and look inside them: {command} demo --keep NEW-FOLDER")
        say(f"Running a node for real: docs/operations.md; every command: {command} --help")
        say("Stopping the three servers." + ("" if keep else " Removing the working folder."))
        return {
            "nodes": [{"node": n, "endpoint": f"http://127.0.0.1:{ports[n]}"} for n in NODES],
            "trust_anchor": anchor,
            "sent": sent,
            "delivered": delivered,
            "receipts_verified": receipts_verified,
            "lost": lost,
            "duplicates": duplicates,
            "audit_entries": audit_sizes,
            "messages": summary_messages,
            "seconds": elapsed,
        }
