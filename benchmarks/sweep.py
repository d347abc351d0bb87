"""Sweep time against open rows: the sweeper's queries with 10,000 and 1,000,000 open rows, the same due work.

    .venv/bin/python -m benchmarks.sweep        # about a minute; writes a section of benchmarks/results/scale.md

Needs PostgreSQL on loopback (``MESSAGING_SCALE_PG_DSN``). Each size gets a schema of its own
(``bench_sweep_<token>``, dropped at the end) filled directly with ``generate_series`` (no
messages are built): the same 400 due rows (100 expired leases, 100 retries due, 100 UNKNOWN,
100 deferred rows due), and the rest open but not due, as during a large campaign: 90 % never
tried, 5 % SUBMITTING with a live lease, 5 % retries due in an hour. One sweep is what
``Sweeper.sweep`` asks the ledger (``wake_deferred``, then ``stale`` with ``probe_then_resend``),
timed ``--rounds`` times after ``VACUUM ANALYZE``, the published rows made sweepable again before
each round; the table gives the median and the range. *Queue busy*: the work queue holds chunks
(never-tried rows are not swept, the usual case while a campaign runs); *queue empty*: never-tried
rows are swept too once ``stale_after`` passed, which none of these has.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.__main__ import machine
from messaging_scale import PostgresLedger

PG_DSN = os.environ.get("MESSAGING_SCALE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).with_name("results") / "scale.md"
HEADING = "## Sweep time against open rows"
DUE = 400

_FILL = """
insert into {schema}.sends (message_id, campaign_id, sender_key, to_address, payload, state, attempts, fence,
                            lease_until, claimed_at, retry_at, deferred, updated_at)
select 'b-' || g, 'bench', '+14155550000', '+1418' || g, '{{}}'::jsonb, k.state, k.attempts, k.attempts,
       now() + k.lease_until, now() + k.claimed_at, now() + k.retry_at, k.deferred, now() + k.updated_at
from generate_series($1::bigint, $2::bigint) as g
join (values
    -- due: expired leases, retries due, UNKNOWN rows, deferred rows due
    (0, 'submitting', 1, interval '-1 hour', interval '-2 hours', null::interval, false, interval '-1 hour'),
    (1, 'pending', 1, null, interval '-2 hours', interval '-1 hour', false, interval '-1 hour'),
    (2, 'unknown', 1, interval '-2 hours', interval '-3 hours', null, false, interval '-1 hour'),
    (3, 'pending', 0, null, null, interval '-1 minute', true, interval '-10 minutes'),
    -- not due: a live lease, a retry in an hour, never tried
    (4, 'submitting', 1, interval '1 hour', interval '0', null, false, interval '0'),
    (5, 'pending', 1, null, interval '0', interval '1 hour', false, interval '0'),
    (6, 'pending', 0, null, null, null, false, interval '0')
) as k (kind, state, attempts, lease_until, claimed_at, retry_at, deferred, updated_at)
on k.kind = case when g <= 400 then ((g - 1) / 100)::int when g % 20 = 0 then 4 when g % 20 = 1 then 5 else 6 end
"""


async def fill(pool: Any, schema: str, rows: int) -> float:
    """Insert ``rows`` open rows (the first ``DUE`` due), 100,000 per statement; seconds taken."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for start in range(1, rows + 1, 100_000):
            await conn.execute(_FILL.format(schema=schema), start, min(rows, start + 99_999))
        await conn.execute(f"vacuum analyze {schema}.sends")
    return time.perf_counter() - started


async def sweep_once(ledger: PostgresLedger, *, unclaimed: bool) -> tuple[float, int]:
    """What ``Sweeper.sweep`` asks the ledger; seconds and ids published."""
    started = time.perf_counter()
    woken = await ledger.wake_deferred(limit=5000, again_after=300.0)
    stale = await ledger.stale(stale_after=300.0, unknown=True, unclaimed=unclaimed, limit=5000, expired_after=5.0)
    return time.perf_counter() - started, len(woken) + len(stale)


async def measure(pool: Any, rows: int, rounds: int) -> dict[str, Any]:
    schema = f"bench_sweep_{uuid.uuid4().hex[:12]}"
    ledger = PostgresLedger(pool, schema=schema)
    await ledger.migrate()
    try:
        filled = await fill(pool, schema, rows)
        result: dict[str, Any] = {"rows": rows, "fill": filled}
        for mode, unclaimed in (("busy", False), ("empty", True)):
            times, published = [], set()
            for _ in range(rounds):
                async with pool.acquire() as conn:  # swept again: as if stale_after had passed since
                    await conn.execute(f"update {schema}.sends set kicked_at = null where kicked_at is not null")
                seconds, count = await sweep_once(ledger, unclaimed=unclaimed)
                times.append(seconds)
                published.add(count)
            result[mode] = {"median": statistics.median(times), "min": min(times), "max": max(times), "ids": published}
        print(f"sweep: {result}", flush=True)
        return result
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"drop schema if exists {schema} cascade")


def section(results: list[dict[str, Any]], rounds: int, generic_plans: bool) -> str:
    plans = "PostgreSQL's choice of plans"
    if generic_plans:
        plans = "generic plans (`plan_cache_mode = force_generic_plan`)"
    lines = [
        HEADING,
        "",
        f"`python -m benchmarks.sweep` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}): one sweep's queries "
        f"(`wake_deferred`, then `stale` with UNKNOWN rows reconciled) against {DUE} due rows (100 expired leases, "
        "100 retries due, 100 UNKNOWN, 100 deferred rows due) among open rows that are not due (90 % never tried, "
        "5 % SUBMITTING with a live lease, 5 % retries due in an hour), filled with `generate_series`. Median "
        f"(min–max) of {rounds} sweeps, {plans}, each size in a schema of its own, one after the other. "
        "*Queue busy*: never-tried rows are left to their queued chunks (the usual case while a campaign runs); "
        "*queue empty*: they are candidates too (none is old enough here).",
        "",
        "| open rows | fill s | sweep ms, queue busy | ids | sweep ms, queue empty | ids |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        busy, empty = result["busy"], result["empty"]
        lines.append(
            f"| {result['rows']:,} | {result['fill']:.1f} | {busy['median'] * 1000:.1f} ({busy['min'] * 1000:.1f}–"
            f"{busy['max'] * 1000:.1f}) | {'/'.join(map(str, sorted(busy['ids'])))} | "
            f"{empty['median'] * 1000:.1f} ({empty['min'] * 1000:.1f}–{empty['max'] * 1000:.1f}) | "
            f"{'/'.join(map(str, sorted(empty['ids'])))} |"
        )
    if len(results) >= 2:
        small, large = results[0], results[-1]
        busy = large["busy"]["median"] / small["busy"]["median"]
        empty = large["empty"]["median"] / small["empty"]["median"]
        lines += [
            "",
            f"{large['rows']:,} against {small['rows']:,} open rows: {busy:.2f}× (queue busy), "
            f"{empty:.2f}× (queue empty).",
        ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) this benchmark's section of ``path``, leaving the rest as it is."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    start = current.find(HEADING)
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(HEADING))
        updated = current[:start] + text + (current[end + 1 :] if end >= 0 else "")
    path.write_text(updated, encoding="utf-8")
    print(f"written to {path}")


async def main(args: argparse.Namespace) -> None:
    # Generic plans: what a sweeper running the same prepared statements for days ends up with.
    settings = {"plan_cache_mode": "force_generic_plan"} if args.generic_plans else {}
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2, server_settings=settings)
    try:
        results = [await measure(pool, rows, args.rounds) for rows in args.rows]
    finally:
        await pool.close()
    text = section(results, args.rounds, args.generic_plans)
    print(text)
    if args.output is not None:
        write_section(args.output, text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000], help="open rows per run")
    parser.add_argument("--rounds", type=int, default=7, help="sweeps timed per size")
    parser.add_argument(
        "--custom-plans", dest="generic_plans", action="store_false", help="let PostgreSQL choose (custom plans first)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="file whose section is written")
    parser.add_argument("--no-output", dest="output", action="store_const", const=None, help="print only")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
