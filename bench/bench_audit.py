"""The audit log at a million entries: appends through ``record()``, checkpoints,
inclusion and consistency proofs, and a full ``verify()`` with its peak memory.

    python bench/bench_audit.py [--quick] [--entries N] [--postgres URL]

Set-up: one node KZ (instance folder in a temporary directory, SQLite in WAL mode,
or a scratch PostgreSQL database created and dropped for the run with
``--postgres``) with a trust list naming it, as a node runs it.

1. The log is filled almost up to ``--entries`` by a **bulk insert** of correctly
   hashed entries (the same xb1-json shape, ``seq`` dense, leaf hash computed
   here): ``record()`` at the rate of step 2 would take too long for a set-up.
2. ``record()`` appends realistic ``envelope-accepted`` entries to that log, one
   per transaction, then in batches of ``--batch`` per transaction.
3. The first checkpoint folds the whole log and stores its subtree hashes; then
   ``--tail`` entries are recorded and the next checkpoint is timed, as a
   dispatcher makes them every ``checkpoint_entries`` entries; then ``--tail``
   more entries are recorded and left unsigned, so proofs also cover entries past
   the last checkpoint.
4. Inclusion and consistency proofs at random indices and sizes, each in its own
   session as the HTTP route does, every one checked with the ``merkle``
   verifiers (not timed). For comparison, one proof is also computed the way it
   was before subtree hashes (every leaf hash up to the size, then the reference
   builders).
5. The evidence bundle of one message recorded in step 2 (``evidence.export``,
   checked with ``evidence.check``), then ``verify()``, each in a fresh
   interpreter (so its memory is its own), reporting time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import federation, machine_lines, median, percentile  # noqa: E402
from bench_receive import scratch_postgres  # noqa: E402
from sqlalchemy import event, func, insert, select  # noqa: E402

from gateway.audit import evidence, log, merkle  # noqa: E402
from gateway.config import load_settings, write_instance_file  # noqa: E402
from gateway.models import AuditEntry, AuditSubtree  # noqa: E402
from gateway.node import Node  # noqa: E402
from keys.nodekeys import NodeKeys  # noqa: E402
from schemas import xb1json  # noqa: E402
from schemas.b64 import b64d, b64e  # noqa: E402

NODE, SENDER = "KZ", "KG"
KIND = "envelope-accepted"


def accepted(i: int, at: int) -> dict[str, Any]:
    """The fields ``receive()`` records for an accepted envelope (digests are made up)."""
    return {
        "at": at,
        "sender": SENDER,
        "id": f"{i:08x}-0000-4000-8000-{i:012x}",
        "typ": "alert/1",
        "ph": b64e(merkle.leaf_hash(b"payload %d" % i)),
        "ch": b64e(merkle.leaf_hash(b"ciphertext %d" % i)),
        "tl": 1,
    }


def rss_line(label: str, kib: int) -> str:
    return f"{label} {kib / 1024:,.0f} MiB"


# --------------------------------------------------------------------------- phases


def time_record(node: Node, count: int, per_transaction: int, first: int) -> float:
    """Entries per second appended through ``record()``, ``per_transaction`` at a time."""
    began = time.perf_counter()
    done = 0
    while done < count:
        with node.sessions() as session:
            for i in range(first + done, first + min(done + per_transaction, count)):
                fields = accepted(i, int(time.time()))
                log.record(session, KIND, **fields)
            session.commit()
        done = min(done + per_transaction, count)
    return count / (time.perf_counter() - began)


def bulk_rows(first_seq: int, count: int, chunk: int) -> Iterator[list[dict[str, Any]]]:
    at = int(time.time())
    rows: list[dict[str, Any]] = []
    for seq in range(first_seq, first_seq + count):
        entry = xb1json.dumps({"kind": KIND, **accepted(seq, at)})
        rows.append(
            {
                "seq": seq,
                "at": at,
                "kind": KIND,
                "entry": entry,
                "leaf_hash": merkle.leaf_hash(entry),
            }
        )
        if len(rows) == chunk:
            yield rows
            rows = []
    if rows:
        yield rows


def bulk_fill(node: Node, upto: int) -> tuple[int, float]:
    with node.sessions() as session:
        first = log.size(session) + 1
        began = time.perf_counter()
        for rows in bulk_rows(first, upto - first + 1, 10_000):
            session.execute(insert(AuditEntry), rows)
        session.commit()
    return upto - first + 1, time.perf_counter() - began


class StatementCounter:
    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


def time_proofs(
    node: Node, pairs: list[tuple[int, int]], kind: str, counter: StatementCounter
) -> tuple[list[float], int, float]:
    """Seconds per proof, how many verified, statements per proof."""
    seconds, verified = [], 0
    before = counter.count
    for first, size in pairs:
        began = time.perf_counter()
        with node.sessions() as session:
            if kind == "inclusion":
                answer = log.inclusion(session, first, size)
            else:
                answer = log.consistency(session, first, size)
        seconds.append(time.perf_counter() - began)
        proof = [b64d(h) for h in answer["proof"]]
        if kind == "inclusion":
            good = merkle.verify_inclusion(
                b64d(answer["leaf_hash"]), first - 1, size, proof, b64d(answer["root"])
            )
        else:
            good = merkle.verify_consistency(
                first, size, b64d(answer["old_root"]), b64d(answer["new_root"]), proof
            )
        verified += good
    return seconds, verified, (counter.count - before) / len(pairs)


def leaf_by_leaf(node: Node, index: int, size: int) -> tuple[float, bytes]:
    """One inclusion proof computed as before subtree hashes: every leaf hash up to the
    size, then the reference builders."""
    began = time.perf_counter()
    with node.sessions() as session:
        leaves = list(
            session.scalars(
                select(AuditEntry.leaf_hash).where(AuditEntry.seq <= size).order_by(AuditEntry.seq)
            )
        )
    merkle.inclusion_proof(leaves, index - 1)
    tree_root = merkle.root(leaves)
    return time.perf_counter() - began, tree_root


def in_child(task: str, instance: Path, *more: str) -> dict[str, Any]:
    """Run ``task`` ("verify" or "export") on the node in ``instance`` in a fresh
    interpreter (so its memory is its own) and return its JSON figures."""
    # Our own interpreter and this file, as bench_receive.py starts gunicorn.
    out = subprocess.run(  # noqa: S603
        [sys.executable, __file__, f"--{task}-child", str(instance), *more],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout))


def _node_without_keys(instance: Path) -> Node:
    def no_keys() -> NodeKeys:
        raise RuntimeError("this needs no private key")

    return Node(load_settings(instance), keys=no_keys, migrate=False)


def verify_child(instance: Path) -> None:
    """Run ``verify()`` on the node in ``instance`` and print JSON figures."""
    node = _node_without_keys(instance)
    trust_list = node.trust()
    before = _status_kib("VmRSS")
    began = time.perf_counter()
    with node.sessions() as session:
        finding = log.verify(session, trust_list, node.id)
    seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "seconds": seconds,
                "ok": finding.ok,
                "entries": finding.entries,
                "checkpoints": finding.checkpoints,
                "problem": finding.problem,
                "rss_before_kib": before,
                "peak_rss_kib": _status_kib("VmHWM"),
            }
        )
    )
    node.engine.dispose()


def export_child(instance: Path, message_id: str) -> None:
    """Export the evidence bundle of ``message_id`` and print JSON figures."""
    node = _node_without_keys(instance)
    node.trust()
    before = _status_kib("VmRSS")
    began = time.perf_counter()
    bundle = evidence.export(node, message_id)
    seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "seconds": seconds,
                "entries": len(bundle["entries"]),
                "shown": evidence.check(bundle)["shown"],  # raises if it does not verify
                "rss_before_kib": before,
                "peak_rss_kib": _status_kib("VmHWM"),
            }
        )
    )
    node.engine.dispose()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    shuffle = random.Random(20261129)
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="xb1-bench-audit-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        instance = root / NODE
        instance.mkdir()
        now = int(time.time())
        keys = NodeKeys.generate(NODE, now=now)
        fed = federation(1, now=now, rings={NODE: keys})
        settings = {"node": NODE, "trust_anchor": fed.anchor}
        database = ""
        if args.postgres:
            settings["database_url"] = scratch_postgres(args.postgres, stack)
            scratch = urlsplit(settings["database_url"]).path[1:]
            database = f"PostgreSQL, scratch database {scratch} (dropped at the end)"
        write_instance_file(instance, settings)
        node = Node(load_settings(instance), keys=keys)
        if not args.postgres:
            database = (f"SQLite (WAL, synchronous={node.settings.sqlite_synchronous.upper()})"
                        " in a temporary folder")
        stack.callback(node.engine.dispose)
        node.install_trust_list(fed.wire)
        counter = StatementCounter(node.engine)

        print("xb1 audit log benchmark (bench/bench_audit.py)")
        for line in machine_lines():
            print("  " + line)
        print(f"  database  {database}")
        load = os.getloadavg()[0]
        print(f"  load      1-minute load average {load:.1f} at the start (shared machine)")
        print(
            f"  entries   {args.entries:,} in the log; ~{len(xb1json.dumps(accepted(0, now)))} B "
            f"xb1-json each ('{KIND}' fields); subtree hashes stored from level "
            f"{log.SUBTREE_LEVEL} ({1 << log.SUBTREE_LEVEL} entries)"
        )
        print()

        target = args.entries - args.single - args.batched - 2 * args.tail
        added, seconds = bulk_fill(node, target)
        print(
            f"  set-up: bulk insert of {added:,} correctly hashed entries (not through "
            f"record()) in {seconds:.1f} s"
        )
        first_recorded = target + 1
        single = time_record(node, args.single, 1, first_recorded)
        batched = time_record(node, args.batched, args.batch, target + 1 + args.single)
        print(f"  record() inside transactions, on a log of {target:,} entries")
        target += args.single + args.batched
        print(f"    1 entry per transaction      {single:>10,.0f} entries/s ({args.single:,})")
        print(
            f"    {args.batch} entries per transaction  {batched:>10,.0f} entries/s "
            f"({args.batched:,})"
        )
        began = time.perf_counter()
        first_checkpoint = log.checkpoint(node)
        full = time.perf_counter() - began
        if first_checkpoint is None:
            raise RuntimeError("the first checkpoint was not made")
        with node.sessions() as session:
            subtrees = session.scalar(select(func.count()).select_from(AuditSubtree))
        time_record(node, args.tail, args.batch, target + 1)
        began = time.perf_counter()
        second = log.checkpoint(node)
        incremental = time.perf_counter() - began
        if second is None:
            raise RuntimeError("the second checkpoint was not made")
        time_record(node, args.tail, args.batch, target + args.tail + 1)
        with node.sessions() as session:
            size = log.size(session)
        print("  checkpoint()")
        print(
            f"    first, folding all {first_checkpoint.size:,} entries     {full:>8.2f} s "
            f"({subtrees:,} subtree rows stored)"
        )
        print(f"    next, {args.tail} new entries                  {incremental * 1000:>8.1f} ms")
        print(
            f"  log size {size:,}; last checkpoint {second.size:,}; "
            f"{size - second.size} entries after it"
        )

        sizes = [second.size, size, first_checkpoint.size]
        inclusion_pairs = []
        consistency_pairs = []
        for n in range(args.proofs):
            tree_size = sizes[n % 3] if n % 2 else shuffle.randint(1, size)
            inclusion_pairs.append((shuffle.randint(1, tree_size), tree_size))
            old = (
                min(first_checkpoint.size, tree_size)
                if n % 4 == 0
                else shuffle.randint(1, tree_size)
            )
            consistency_pairs.append((old, tree_size))
        print(f"  proofs, {args.proofs} each, half at random sizes, half at the log's size or")
        print("  a checkpoint's; one session each; p50 / p99 / max ms; checked by the verifiers")
        for kind, pairs in (("inclusion", inclusion_pairs), ("consistency", consistency_pairs)):
            times, verified, statements = time_proofs(node, pairs, kind, counter)
            ordered = sorted(times)
            p50, p99 = median(times) * 1000, percentile(ordered, 0.99) * 1000
            print(
                f"    {kind:<12} {p50:>7.2f} {p99:>7.2f} "
                f"{ordered[-1] * 1000:>7.2f}   {statements:.1f} statements each, "
                f"{verified}/{len(pairs)} verified"
            )
        old_way, old_root = leaf_by_leaf(node, size // 3, size)
        print(
            f"    before subtree hashes (every leaf hash, then the reference builders): "
            f"one inclusion proof at size {size:,} took {old_way:.2f} s"
        )
        with node.sessions() as session:
            same = b64d(log.inclusion(session, size // 3, size)["root"]) == old_root
        print(f"    same root both ways: {same}")

        node.engine.dispose()
        exported = in_child("export", instance, accepted(first_recorded, now)["id"])
        print("  evidence export of one message, in a fresh interpreter")
        print(
            f"    {exported['entries']} entry found among {size:,} in "
            f"{exported['seconds']:.1f} s; the bundle verifies, showing "
            f"{', '.join(exported['shown'])}; "
            f"{rss_line('RSS before', exported['rss_before_kib'])}, "
            f"{rss_line('peak RSS', exported['peak_rss_kib'])}"
        )
        figures = in_child("verify", instance)
        print("  verify(), in a fresh interpreter")
        print(
            f"    {figures['entries']:,} entries, {figures['checkpoints']} checkpoints, "
            f"ok={figures['ok']} in {figures['seconds']:.1f} s "
            f"({figures['entries'] / figures['seconds']:,.0f} entries/s)"
        )
        if figures["problem"]:
            print(f"    problem: {figures['problem']}")
        print(
            f"    {rss_line('RSS before', figures['rss_before_kib'])}, "
            f"{rss_line('peak RSS', figures['peak_rss_kib'])}"
        )
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")
    print(f"  total run time {time.perf_counter() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 entries, fewer appends")
    parser.add_argument("--entries", type=int, help="entries in the log (default 1,000,000)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="use a scratch database created (and dropped) on this PostgreSQL server, "
        "e.g. postgresql://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument("--batch", type=int, default=100, help="entries per batched transaction")
    parser.add_argument("--proofs", type=int, default=200, help="proofs of each kind")
    parser.add_argument("--tail", type=int, default=100, help="entries per checkpoint interval")
    parser.add_argument("--verify-child", metavar="INSTANCE", help=argparse.SUPPRESS)
    parser.add_argument("--export-child", nargs=2, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_child:
        verify_child(Path(args.verify_child))
        return
    if args.export_child:
        export_child(Path(args.export_child[0]), args.export_child[1])
        return
    args.entries = args.entries or (100_000 if args.quick else 1_000_000)
    args.single = 500 if args.quick else 2000
    args.batched = 5000 if args.quick else 20_000
    run(args)


if __name__ == "__main__":
    main()
