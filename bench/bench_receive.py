"""Envelopes per second accepted by one node's ``POST /xb1/envelopes`` under gunicorn,
beside the trivial ``GET /healthz`` of the same app and server, in one run.

    python bench/bench_receive.py [--quick] [--postgres URL] [--profile] [--with-submissions]

Set-up: a receiving node KG (instance folder in a temporary directory, SQLite in
WAL mode, or a scratch PostgreSQL database created and dropped for the run with
``--postgres``), its trust list naming a sender KZ, and gunicorn started the way
``gateway demo`` starts nodes (same settings for both routes; printed). Before
any timing the sender pre-seals distinct valid envelopes (one recipient, ~2 KiB
alert body), so every POST is a new message, not a retry. C client threads, each
with one persistent HTTP/1.1 connection (``http.client``), then fire the
requests; a request counts when it is answered 200. The requests of each route are
split into interleaved rounds (healthz, envelopes, healthz, ...; ``--rounds``), so a
drift in the machine's speed during the run weighs on both routes alike; the ratio
is of the pooled rates, and each round's ratio is printed. Latency is per request,
measured in the client. Server CPU is read from /proc for the gunicorn master
and workers, so the CPU cost per request is reported too.

The load generator and the server share this machine's cores; on a 2-core box
the client threads take a real share of the CPU, more so for the trivial route.
After the HTTP runs, ``receive()`` is also timed in-process on one thread (no
HTTP, no Flask) to separate the receive pipeline from the web stack.

With ``--with-submissions``, as many envelopes again are then sent while an agency
submits alerts (about another person) through ``POST /api/v1/messages`` every
5 ms: the submissions' latency alone and during the envelopes, and the envelope
rate meanwhile, are printed (each submission first records the identifiers of H2
data received since the last, gateway/onward.py).
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import itertools
import json
import os
import pstats
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import alert_body, federation, machine_lines, payload_size, percentile  # noqa: E402

from gateway import tokens  # noqa: E402
from gateway.config import load_settings, write_instance_file  # noqa: E402
from gateway.db import DriverStatement  # noqa: E402
from gateway.envelope import seal  # noqa: E402
from gateway.inbox import receive  # noqa: E402
from gateway.models import InboundMessage  # noqa: E402
from gateway.node import Node  # noqa: E402
from keys.nodekeys import NodeKeys  # noqa: E402
from keys.sealed import MEMLIMIT_INTERACTIVE, OPSLIMIT_INTERACTIVE  # noqa: E402
from schemas.examples import example_alert_uzbek_latin  # noqa: E402

RECEIVE_TARGET = 0.40
RECEIVER, SENDER = "KG", "KZ"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gunicorn_args(port: int, workers: int, threads: int) -> list[str]:
    return ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
            "--worker-class", "gateway.gunicorn_worker.ThreadWorker", "--keep-alive", "10",
            "--log-level", "warning", "gateway.wsgi:app"]


def start_server(instance: Path, args: list[str], passphrase: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, GATEWAY_INSTANCE=str(instance), GATEWAY_KEY_PASSPHRASE=passphrase)
    log = (instance / "server.log").open("wb")
    # Our own interpreter and fixed arguments, as gateway/demo.py does.
    return subprocess.Popen([sys.executable, "-m", "gunicorn", *args], env=env, stdout=log,  # noqa: S603
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(port: int, process: subprocess.Popen[bytes], workers: int, timeout: float) -> None:
    """Wait for /readyz, then for every worker to have booted (so none loads mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {process.returncode}; see server.log")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            ready = connection.getresponse().status == 200
            connection.close()
            if ready and len(server_pids(process.pid)) == workers + 1:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not become ready in time; see server.log")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def server_pids(master: int) -> list[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        children = []
    return [master, *map(int, children)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the given processes (all their threads)."""
    return sum(cpu_split(pids))


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time of the given processes (all their threads)."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])  # fields 14 and 15
    return user / CLOCK_TICKS, system / CLOCK_TICKS


# --------------------------------------------------------------------------- load


@dataclass
class Phase:
    label: str
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float
    extra_cpu: float
    server_system: float  # the kernel's share of server_cpu

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def row(self) -> str:
        ordered = sorted(self.latencies)
        p50, p99 = percentile(ordered, 0.50) * 1000, percentile(ordered, 0.99) * 1000
        return (f"  {self.label:<22} {self.sent:>6} {self.ok:>6} {self.seconds:>7.2f} "
                f"{self.rate:>9,.0f} {p50:>8.1f} {p99:>8.1f} "
                f"{1000 * self.server_cpu / max(self.ok, 1):>8.2f} "
                f"{1000 * self.client_cpu / max(self.sent, 1):>8.2f}")


def fire(label: str, port: int, method: str, path: str, bodies: list[bytes] | None, count: int,
         clients: int, server: int, extra_pids: Callable[[], list[int]] = list) -> Phase:
    """``count`` requests from ``clients`` threads on persistent connections."""
    headers = {"Content-Type": "application/xb1+json"} if bodies is not None else {}
    counter = itertools.count()  # next() on itertools.count is atomic under the GIL
    start_gate = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    outcome = [[0, 0] for _ in range(clients)]  # ok, errors

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.connect()
        mine, result = latencies[slot], outcome[slot]
        start_gate.wait()
        while (index := next(counter)) < count:
            body = bodies[index] if bodies is not None else None
            began = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                answer = connection.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException):
                connection.close()  # reconnects on the next request
                result[1] += 1
                continue
            mine.append(time.perf_counter() - began)
            if answer.status == 200:
                result[0] += 1
            else:
                result[1] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    pids, others = server_pids(server), extra_pids()
    server_before, client_before = cpu_split(pids), sum(os.times()[:2])
    extra_before = cpu_seconds(others)  # processes appearing later start from zero
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    server_user, server_system = (after - before for after, before in
                                  zip(cpu_split(pids), server_before, strict=True))
    client_cpu = sum(os.times()[:2]) - client_before
    extra_cpu = cpu_seconds(sorted(set(others) | set(extra_pids()))) - extra_before
    return Phase(label, count, sum(o[0] for o in outcome), sum(o[1] for o in outcome), seconds,
                 [x for mine in latencies for x in mine], server_user + server_system, client_cpu,
                 extra_cpu, server_system)


def submissions_beside(port: int, token: str, envelopes: list[bytes], clients: int,
                       server: int) -> None:
    """An agency submitting alerts (about another person than the envelopes', to the
    sender KZ) through ``POST /api/v1/messages`` every 5 ms: first alone for 2 s,
    then while ``envelopes`` are sent; submission latency and envelope rate."""
    body = json.dumps({"typ": "alert/1", "body": example_alert_uzbek_latin(), "to": [SENDER]})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    answers: dict[int, int] = {}
    stop = threading.Event()

    def agency() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            began = time.perf_counter()
            connection.request("POST", "/api/v1/messages", body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            latencies.append(time.perf_counter() - began)
            answers[answer.status] = answers.get(answer.status, 0) + 1
            time.sleep(0.005)
        connection.close()

    def summary(label: str) -> str:
        ordered = sorted(latencies)
        p50, p99 = percentile(ordered, 0.5), percentile(ordered, 0.99)
        return (f"  submissions {label}: {len(ordered)}, p50 {1000 * p50:.1f} ms, "
                f"p99 {1000 * p99:.1f} ms, max {1000 * ordered[-1]:.1f} ms")

    submitter = threading.Thread(target=agency)
    submitter.start()
    try:
        time.sleep(2)
        print()
        print(summary("alone for 2 s"))
        latencies.clear()
        phase = fire("POST /xb1/envelopes", port, "POST", "/xb1/envelopes", envelopes,
                     len(envelopes), clients, server)
    finally:
        stop.set()
        submitter.join()
    print(summary("while envelopes arrive"))
    print(f"  envelopes meanwhile: {phase.ok}/{phase.sent} accepted, {phase.rate:,.0f}/s; "
          f"answers to submissions by status: {dict(sorted(answers.items()))}")


def pooled(rounds: list[Phase]) -> Phase:
    """The rounds of one route as one phase: requests, time and CPU summed."""
    return Phase(rounds[0].label, sum(p.sent for p in rounds), sum(p.ok for p in rounds),
                 sum(p.errors for p in rounds), sum(p.seconds for p in rounds),
                 [x for p in rounds for x in p.latencies], sum(p.server_cpu for p in rounds),
                 sum(p.client_cpu for p in rounds), sum(p.extra_cpu for p in rounds),
                 sum(p.server_system for p in rounds))


# --------------------------------------------------------------------------- database


def count_statements(node: Node) -> dict[str, int]:
    """Count, from now on, the statements, commits and connection checkouts of ``node``'s
    engine: SQLAlchemy events, plus the statements the receive path runs on the
    driver's cursor (``DriverStatement``, which fires no SQLAlchemy event). The pool's
    liveness ping on PostgreSQL is not a counted statement."""
    from sqlalchemy import event

    counts = {"statements": 0, "commits": 0, "checkouts": 0}

    def statement(*_: object) -> None:
        counts["statements"] += 1

    run_first = DriverStatement.first

    def counted_first(self: DriverStatement, *args: Any, **kwargs: Any) -> Any:
        counts["statements"] += 1
        return run_first(self, *args, **kwargs)

    DriverStatement.first = counted_first  # type: ignore[method-assign]

    def commit(*_: object) -> None:
        counts["commits"] += 1

    def checkout(*_: object) -> None:
        counts["checkouts"] += 1

    event.listen(node.engine, "before_cursor_execute", statement)
    event.listen(node.engine, "commit", commit)
    event.listen(node.engine.pool, "checkout", checkout)
    return counts


def backend_pids(admin_url: str, database: str) -> Callable[[], list[int]]:
    """A function listing the PostgreSQL backend processes serving ``database`` (the server
    runs on this machine, so their CPU time can be read from /proc like gunicorn's)."""
    import psycopg

    def pids() -> list[int]:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                 (database,)).fetchall()
        return [int(row[0]) for row in rows]

    return pids


def scratch_postgres(url: str, stack: ExitStack) -> str:
    """Create a scratch database next to ``url``'s and register its drop; return its URL."""
    import psycopg

    name = f"xb1_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="xb1-bench-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        instance = root / RECEIVER
        instance.mkdir()
        now = int(time.time())
        port = free_port()
        passphrase = secrets.token_urlsafe(16)
        receiver_keys = NodeKeys.generate(RECEIVER, now=now)
        receiver_keys.save(instance / "node-keys.json", passphrase,
                           opslimit=OPSLIMIT_INTERACTIVE, memlimit=MEMLIMIT_INTERACTIVE)
        fed = federation(1, now=now, rings={RECEIVER: receiver_keys},
                         endpoints={RECEIVER: f"http://127.0.0.1:{port}"})
        settings = {"node": RECEIVER, "trust_anchor": fed.anchor,
                    "sqlite_synchronous": args.sqlite_synchronous}
        db_pids: Callable[[], list[int]] = list
        database = ""
        if args.postgres:
            settings["database_url"] = scratch_postgres(args.postgres, stack)
            scratch = urlsplit(settings["database_url"]).path[1:]
            database = f"PostgreSQL, scratch database {scratch} (dropped at the end)"
            db_pids = backend_pids(args.postgres, scratch)
        write_instance_file(instance, settings)
        node = Node(load_settings(instance), keys=receiver_keys)
        if not args.postgres:
            database = (f"SQLite (WAL, synchronous={node.settings.sqlite_synchronous.upper()})"
                        " in a temporary folder")
        stack.callback(node.engine.dispose)
        node.install_trust_list(fed.wire)

        body = alert_body()
        recipients = fed.recipient_list()
        signing_key = fed.sender.current_signing
        inproc = 0 if args.quick else args.inproc
        profiled = args.profile_messages if args.profile else 0
        mixed = args.messages if args.with_submissions else 0
        total = args.warmup + args.messages + mixed + inproc + profiled
        seal_began = time.perf_counter()
        wires = [seal(typ="alert/1", body=body, sender=SENDER, signing_key=signing_key,
                      recipients=recipients, tl=1).to_wire() for _ in range(total)]
        seal_seconds = time.perf_counter() - seal_began
        warm, timed = wires[: args.warmup], wires[args.warmup: args.warmup + args.messages]
        during = wires[args.warmup + args.messages: args.warmup + args.messages + mixed]
        rest = wires[args.warmup + args.messages + mixed:]
        token = ""
        if mixed:
            with node.sessions() as session:
                token = tokens.issue(session, "kg-police", "bench").secret
                session.commit()

        server_args = gunicorn_args(port, args.workers, args.threads)
        server = start_server(instance, server_args, passphrase)
        stack.callback(stop_server, server)
        wait_ready(port, server, args.workers, timeout=60)

        print("xb1 receive benchmark (bench/bench_receive.py)")
        for line in machine_lines():
            print("  " + line)
        print(f"  note      load generator and server share the {os.cpu_count()} cores above")
        print(f"  server    gunicorn {' '.join(server_args[2:-1])} gateway.wsgi:app "
              f"(bound to 127.0.0.1:{port})")
        print(f"  database  {database}")
        print(f"  clients   {args.clients} threads, one persistent http.client connection each")
        print(f"  payload   {payload_size(body)} B alert body, 1 recipient, "
              f"{len(timed[0])} B envelope; {total} distinct envelopes pre-sealed in "
              f"{seal_seconds:.1f} s before timing")
        print()

        # Warm every worker thread on both routes (first requests load the trust list).
        fire("warm-up", port, "GET", "/healthz", None, args.warmup, args.clients, server.pid)
        warm_phase = fire("warm-up", port, "POST", "/xb1/envelopes", warm, len(warm),
                          args.clients, server.pid)
        if warm_phase.ok != len(warm):
            raise RuntimeError(f"warm-up envelopes refused: {warm_phase.ok}/{len(warm)} "
                               f"accepted; see {instance / 'server.log'}")

        # Interleaved rounds: this VM's speed drifts within a run (other tenants), and a
        # drift during one long phase would bias the ratio either way.
        health_rounds, envelope_rounds = [], []
        for index in range(args.rounds):
            share = slice(index * len(timed) // args.rounds,
                          (index + 1) * len(timed) // args.rounds)
            health_rounds.append(fire("GET /healthz", port, "GET", "/healthz", None,
                                      args.health_requests // args.rounds, args.clients,
                                      server.pid, db_pids))
            envelope_rounds.append(fire("POST /xb1/envelopes", port, "POST", "/xb1/envelopes",
                                        timed[share], len(timed[share]), args.clients,
                                        server.pid, db_pids))
        health, envelopes = pooled(health_rounds), pooled(envelope_rounds)
        pairs = zip(health_rounds, envelope_rounds, strict=True)
        round_ratios = [e.rate / h.rate for h, e in pairs]

        print(f"  {'route':<22} {'sent':>6} {'200':>6} {'seconds':>7} {'req/s':>9} "
              f"{'p50 ms':>8} {'p99 ms':>8} {'srv ms':>8} {'cli ms':>8}")
        print(health.row())
        print(envelopes.row())
        print("  srv ms / cli ms = CPU milliseconds per request spent by gunicorn (master +")
        print("  workers) / by this load-generating process; in the kernel (system time): "
              f"healthz {1000 * health.server_system / max(health.ok, 1):.2f}, envelopes "
              f"{1000 * envelopes.server_system / max(envelopes.ok, 1):.2f} ms per request")
        if args.postgres:
            print(f"  PostgreSQL backends of the scratch database (not in srv ms): "
                  f"{1000 * envelopes.extra_cpu / max(envelopes.ok, 1):.2f} ms CPU per "
                  f"accepted envelope")
        ratio = envelopes.rate / health.rate
        print(f"  {args.rounds} interleaved rounds (healthz, then envelopes); ratio per round: "
              + ", ".join(f"{r:.1%}" for r in round_ratios)
              + f"; median {statistics.median(round_ratios):.1%}")
        print()
        print(f"  ratio receive / healthz rate: {ratio:.1%}  target >= {RECEIVE_TARGET:.0%}: "
              f"{'met' if ratio >= RECEIVE_TARGET else 'MISSED'}")
        if envelopes.errors or health.errors:
            print(f"  non-200 answers or transport errors: healthz {health.errors}, "
                  f"envelopes {envelopes.errors}")
        per_envelope = envelopes.server_cpu / max(envelopes.ok, 1)
        per_health = health.server_cpu / max(health.ok, 1)
        print(f"  server CPU per accepted envelope is {per_envelope / per_health:.1f}x that of a "
              f"healthz request (CPU-only ratio {per_health / per_envelope:.1%})")

        if mixed:
            submissions_beside(port, token, during, args.clients, server.pid)

        stop_server(server)
        with node.sessions() as session:
            stored = session.query(InboundMessage).count()
        print(f"  inbox holds {stored} messages (expected {len(warm) + len(timed) + len(during)})")

        if inproc:
            batch = rest[:inproc]
            counts = count_statements(node)
            began = time.perf_counter()
            answers = [receive(node, raw).status for raw in batch]
            seconds = time.perf_counter() - began
            print(f"  in-process receive() on 1 thread, no HTTP: {len(batch) / seconds:,.0f}/s "
                  f"({1000 * seconds / len(batch):.2f} ms each, {answers.count(200)} accepted)")
            print(f"  per accepted envelope: {counts['statements'] / len(batch):.1f} SQL "
                  f"statements, {counts['commits'] / len(batch):.1f} commits, "
                  f"{counts['checkouts'] / len(batch):.1f} pool checkouts")
        if args.profile:
            batch = rest[inproc: inproc + args.profile_messages]
            profiler = cProfile.Profile()
            profiler.enable()
            for raw in batch:
                receive(node, raw)
            profiler.disable()
            print(f"\n  cProfile of in-process receive() over {len(batch)} envelopes")
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(20)
            stats.sort_stats("cumulative").print_stats(25)
    print(f"  total run time {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (under 15 s)")
    parser.add_argument("--postgres", metavar="URL",
                        help="run the receiver on a scratch database created (and dropped) "
                             "on this PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sqlite-synchronous", choices=("full", "normal"),
                        help="the node's sqlite_synchronous setting (default: the node's "
                             "default, full)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--messages", type=int, help="timed envelopes (default 3000, quick 600)")
    parser.add_argument("--health-requests", type=int,
                        help="timed healthz requests (default 6000, quick 1500)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved healthz/envelope rounds the requests are split into")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile receive() in-process")
    parser.add_argument("--with-submissions", action="store_true",
                        help="then send as many envelopes again while an agency submits "
                             "alerts every 5 ms, and report both")
    args = parser.parse_args()
    args.messages = args.messages or (600 if args.quick else 3000)
    args.health_requests = args.health_requests or (1500 if args.quick else 6000)
    args.warmup = 4 * args.clients
    args.inproc = 500
    args.profile_messages = 300
    run(args)


if __name__ == "__main__":
    main()
