"""The PostgreSQL schema shared by ``PostgresLedger`` and ``PostgresStatusStore``.

Tables (``docs/scale-out.md``, "Distributed stores"):

- ``sends``: one row per message, the ledger (sending state, fence, lease) and the delivery
  status (``status``/``status_rank``, monotonic) side by side;
- ``campaign_counters``: per-campaign counts by state, sharded by ``shard_of(message_id)`` so that
  concurrent transitions don't queue on one hot row;
- ``webhook_events``: idempotency tokens of the status callbacks already applied;
- ``orphan_status``: statuses that arrived before the message's provider id was known;
- ``campaigns``: the distributed dispatcher's campaigns (connector name, pause and cancel flags);
- ``sweeps``: whose turn it is to run a periodic job (the sweeper of re-kicks).

Two invariants are kept by the database itself rather than by every caller, so that no code path
can forget them: the counters follow every insert and state change of ``sends`` (statement-level
triggers, in the same transaction), and an orphan status is folded into its message the moment
the provider id is stored (a row trigger). ``migrate`` is idempotent and safe to run concurrently.
"""

from __future__ import annotations

import re
from typing import Any

from messaging_core.campaigns import SendState
from messaging_core.results import MessageStatus

__all__ = ["COUNTER_SHARDS", "OPEN_STATES", "check_schema_name", "ddl", "migrate", "sql_list"]

COUNTER_SHARDS = 16
"""Rows per (campaign, state) in ``campaign_counters``."""

OPEN_STATES = (SendState.PENDING, SendState.SUBMITTING, SendState.UNKNOWN)
"""States that still need work."""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lower-case PostgreSQL identifier (it is spliced into SQL text)."""
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(f"schema name must match {_SCHEMA_NAME.pattern}: {name!r}")
    return name


def row_count(status: str) -> int:
    """The rows a statement touched, from asyncpg's command tag (``UPDATE 1``, ``INSERT 0 5``)."""
    return int(status.rsplit(" ", 1)[-1])


def sql_list(values: Any) -> str:
    """``'a', 'b'``: values quoted for an ``in (...)`` list (trusted values only: enum members)."""
    return ", ".join(f"'{value}'" for value in values)


_DDL = """
create schema if not exists {schema};

create table if not exists {schema}.sends (
    seq          bigint generated always as identity,  -- insertion order, the keyset of results()
    message_id   text primary key,
    campaign_id  text not null,
    sender_key   text not null,
    to_address   text not null default '',
    payload      jsonb not null,
    cost         int not null default 1,
    state        text not null default 'pending' check (state in ({all_states})),
    attempts     int not null default 0,
    fence        bigint not null default 0,
    lease_until  timestamptz,
    claimed_at   timestamptz,
    retry_at     timestamptz,
    provider_id  text unique,
    error_code   text,
    reconciled   boolean not null default false,
    status       text,
    status_rank  int not null default 0,
    status_at    timestamptz,
    updated_at   timestamptz not null default now()
);
-- deferred: a worker left the row until retry_at (a pace slot or a retry too far ahead to hold
-- its chunk for); the sweeper publishes it again then. kicked_at: when a sweep last published
-- the row; a stale row is published again only once stale_after has passed since.
-- cost was called segments (an SMS word in a channel-neutral ledger) until 0.1: rename it in place.
do $$ begin
    if exists (select 1 from information_schema.columns
               where table_schema = '{schema}' and table_name = 'sends' and column_name = 'segments') then
        alter table {schema}.sends rename column segments to cost;
    end if;
end $$;
alter table {schema}.sends add column if not exists deferred boolean not null default false;
alter table {schema}.sends add column if not exists kicked_at timestamptz;
-- claim_token: names the claim that moved the row to SUBMITTING, so a claim whose answer was lost
-- can be given back (release).
alter table {schema}.sends add column if not exists claim_token text;
-- failures/last_error: passes of a PENDING row that raised the same error in a row (a row that
-- cannot be loaded, a connector that raises on it); at max_attempts the row is FAILED with it.
alter table {schema}.sends add column if not exists failures int not null default 0;
alter table {schema}.sends add column if not exists last_error text;
create index if not exists sends_campaign_seq on {schema}.sends (campaign_id, seq);
create index if not exists sends_deferred on {schema}.sends (retry_at) where deferred;
-- A probe asks which calls to the same receiver may be under way or in doubt (open_to): rare, small.
create index if not exists sends_open_to on {schema}.sends (to_address) where state in ('submitting', 'unknown');
create index if not exists sends_open on {schema}.sends (seq) where state in ({open_states});
-- The sweeper's candidates, each kind by the time it became due, so that a sweep reads the rows
-- that are due, not every open row: expired leases, rows in doubt, PENDING rows tried before and
-- never tried (apart: those are many during a campaign, and swept only when the queue is empty).
-- Each is partial on the state and keyed on columns that change only with the state or retry_at
-- (indexed already): updated_at moves only with the sending state (a status callback leaves it
-- unless it settles a send), so the updates that leave the state alone, status callbacks above
-- all and the sweep's own kicked_at, stay HOT.
create index if not exists sends_lease_ends on {schema}.sends (lease_until) where state = 'submitting';
create index if not exists sends_in_doubt_since on {schema}.sends (updated_at) where state = 'unknown';
create index if not exists sends_tried_due on {schema}.sends (coalesce(retry_at, updated_at))
    where state = 'pending' and attempts > 0;
create index if not exists sends_untried_due on {schema}.sends (coalesce(retry_at, updated_at))
    where state = 'pending' and attempts = 0;

create table if not exists {schema}.campaign_counters (
    campaign_id  text not null,
    shard        smallint not null,
    state        text not null,
    n            bigint not null,
    primary key (campaign_id, shard, state)
);

create table if not exists {schema}.webhook_events (
    token        text primary key,
    received_at  timestamptz not null default now()
);
-- The sweeper deletes the oldest tokens in batches (PostgresStatusStore.prune_webhook_events).
create index if not exists webhook_events_received on {schema}.webhook_events (received_at);

-- The suppression list (SuppressionList): recipients who opted out (STOP); sends to them fail at
-- once, with no provider call, until they opt back in (START).
create table if not exists {schema}.suppressions (
    address  text primary key,
    reason   text not null,
    since    timestamptz not null default now()
);

create table if not exists {schema}.orphan_status (
    ref          text primary key,  -- the id the callback named: the provider's, or ours
    status       text not null,
    status_rank  int not null,
    status_at    timestamptz not null,
    received_at  timestamptz not null default now()
);

-- Campaigns submitted through the distributed dispatcher: which connector sends them, and the
-- flags workers check before each provider call. A ledger used without that dispatcher (the
-- in-process one) leaves it empty: campaigns without a row are neither paused nor cancelled.
create table if not exists {schema}.campaigns (
    campaign_id  text primary key,
    connector    text not null,
    paused       boolean not null default false,
    cancelled    boolean not null default false,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

-- failure: why workers cannot send the campaign at all (a connector their file lacks); set with
-- paused, cleared by resume or a new submission.
alter table {schema}.campaigns add column if not exists failure text;

-- Turns of periodic jobs (the sweeper): one process wins each turn, whichever machine it runs on.
create table if not exists {schema}.sweeps (
    name     text primary key,
    next_at  timestamptz not null
);

create or replace function {schema}.shard_of(message_id text) returns smallint
language sql immutable as $$ select (hashtext(message_id) & {shard_mask})::smallint $$;

-- MessageStatus.can_become, with NULL for "no status yet".
create or replace function {schema}.status_advances(cur text, cur_rank int, new text, new_rank int)
returns boolean language sql immutable as $$
    select case
        when cur is null then true
        when cur = new then false
        when cur = 'delivered' and new = 'read' then true
        when cur in ({final_statuses}) then new = 'deleted'
        else new_rank > cur_rank
    end
$$;

-- Serializes "store an orphan" with "merge orphans when the provider id appears" per id, so an
-- orphan can't slip in between the merge and the commit that makes the provider id visible.
-- Keys are taken in one order everywhere: no deadlock between two callers.
create or replace function {schema}.lock_refs(a text, b text) returns void
language plpgsql as $$
begin
    perform pg_advisory_xact_lock(k)
    from (select distinct hashtextextended('{schema}:' || r, 0) as k
          from unnest(array[a, b]) as r where r is not null) as keys
    order by k;
end $$;

create or replace function {schema}.count_inserted() returns trigger
language plpgsql as $$
begin
    -- Sorted, so concurrent statements lock counter rows in one order.
    insert into {schema}.campaign_counters as c (campaign_id, shard, state, n)
    select campaign_id, {schema}.shard_of(message_id), state, count(*)
    from new_rows group by 1, 2, 3 order by 1, 2, 3
    on conflict (campaign_id, shard, state) do update set n = c.n + excluded.n;
    return null;
end $$;

create or replace function {schema}.count_transitions() returns trigger
language plpgsql as $$
begin
    insert into {schema}.campaign_counters as c (campaign_id, shard, state, n)
    select campaign_id, shard, state, sum(delta)
    from (
        select o.campaign_id, {schema}.shard_of(o.message_id) as shard, o.state, -1 as delta
        from old_rows o join new_rows n using (message_id) where o.state <> n.state
        union all
        select n.campaign_id, {schema}.shard_of(n.message_id), n.state, 1
        from old_rows o join new_rows n using (message_id) where o.state <> n.state
    ) as moves
    group by 1, 2, 3 having sum(delta) <> 0 order by 1, 2, 3
    on conflict (campaign_id, shard, state) do update set n = c.n + excluded.n;
    return null;
end $$;

create or replace trigger sends_count_inserted after insert on {schema}.sends
referencing new table as new_rows for each statement execute function {schema}.count_inserted();

create or replace trigger sends_count_transitions after update on {schema}.sends
referencing old table as old_rows new table as new_rows
for each statement execute function {schema}.count_transitions();

create or replace function {schema}.merge_orphans() returns trigger
language plpgsql as $$
declare
    orphan record;
begin
    perform {schema}.lock_refs(new.message_id, new.provider_id);
    for orphan in
        delete from {schema}.orphan_status where ref in (new.message_id, new.provider_id) returning *
    loop
        if {schema}.status_advances(new.status, new.status_rank, orphan.status, orphan.status_rank) then
            new.status := orphan.status;
            new.status_rank := orphan.status_rank;
            new.status_at := orphan.status_at;
        end if;
    end loop;
    return new;
end $$;

create or replace trigger sends_merge_orphans before update of provider_id on {schema}.sends
for each row when (old.provider_id is null and new.provider_id is not null)
execute function {schema}.merge_orphans();

-- One status callback, in one round trip. Returns 'applied', 'orphaned', 'stale' or 'duplicate'.
create or replace function {schema}.apply_status(
    p_mid text, p_sid text, p_status text, p_rank int, p_at timestamptz, p_token text
) returns text
language plpgsql as $$
declare
    target text;
begin
    if p_token is not null then
        insert into {schema}.webhook_events (token) values (p_token) on conflict do nothing;
        if not found then
            return 'duplicate';
        end if;
    end if;

    select message_id into target from {schema}.sends where message_id = p_mid;
    if target is null then
        select message_id into target from {schema}.sends where provider_id = coalesce(p_sid, p_mid);
    end if;

    if target is null then
        perform {schema}.lock_refs(p_mid, p_sid);
        -- The message (or its provider id) appeared while we waited. Updating it now would take
        -- its row lock after the advisory lock, the reverse of merge_orphans: ask for a retry.
        if exists (select from {schema}.sends
                   where message_id = p_mid or provider_id = coalesce(p_sid, p_mid)) then
            raise exception 'status target appeared concurrently' using errcode = '40001';
        end if;
        insert into {schema}.orphan_status as o (ref, status, status_rank, status_at)
        select distinct r, p_status, p_rank, p_at from unnest(array[p_mid, p_sid]) as r where r is not null
        on conflict (ref) do update
            set status = excluded.status, status_rank = excluded.status_rank, status_at = excluded.status_at
            where {schema}.status_advances(o.status, o.status_rank, excluded.status, excluded.status_rank);
        return case when found then 'orphaned' else 'stale' end;
    end if;

    -- A callback proves the provider created the message: it settles an in-doubt send.
    -- updated_at is the sending state's: a status alone leaves it (and the row HOT).
    update {schema}.sends
    set status = p_status, status_rank = p_rank, status_at = p_at,
        provider_id = coalesce(provider_id, p_sid),
        state = case when state in ('pending', 'submitting', 'unknown') then 'accepted' else state end,
        fence = case when state in ('pending', 'submitting', 'unknown') then fence + 1 else fence end,
        updated_at = case when state in ('pending', 'submitting', 'unknown') then now() else updated_at end
    where message_id = target and {schema}.status_advances(status, status_rank, p_status, p_rank);
    return case when found then 'applied' else 'stale' end;
end $$;

-- Many status callbacks in one transaction (PostgresStatusStore's batches): the outcome of each,
-- in order, as apply_status would have given them one after the other. NULL: not applied here,
-- the caller applies it alone with apply_status after this batch commits: an update whose
-- message is not found (an orphan, or a message appearing meanwhile: apply_status's locks and
-- retry handle that race), and every later update naming one of its ids or its token, so that
-- updates of one message keep their order.
create or replace function {schema}.apply_statuses(
    p_mid text[], p_sid text[], p_status text[], p_rank int[], p_at timestamptz[], p_token text[]
) returns text[]
language plpgsql as $$
declare
    n int := cardinality(p_mid);
    outcome text[] := array_fill(null::text, array[n]);
    target text[];
    held text[] := '{}';
    fresh int[];
    r record;
    cur_target text;
    cur_status text;
    cur_rank int;
    cur_at timestamptz;
    cur_sid text;
    changed boolean := false;
    ids text[] := '{}';
    statuses text[] := '{}';
    ranks int[] := '{}';
    ats timestamptz[] := '{}';
    sids text[] := '{}';
begin
    select array_agg(coalesce(
               (select message_id from {schema}.sends where message_id = u.m),
               (select message_id from {schema}.sends where provider_id = coalesce(u.s, u.m)))
           order by u.i)
    into target
    from unnest(p_mid, p_sid) with ordinality as u(m, s, i);

    for i in 1 .. n loop
        if target[i] is null or p_mid[i] = any(held) or p_sid[i] = any(held) or p_token[i] = any(held) then
            target[i] := null;
            held := held || array[p_mid[i], p_sid[i], p_token[i]];
        end if;
    end loop;

    -- A token seen before, or earlier in this batch, makes a duplicate. Inserted in one order, so
    -- concurrent batches cannot deadlock on each other's tokens.
    with firsts as (
        select distinct on (u.t) u.t, u.i::int as i
        from unnest(p_token, target) with ordinality as u(t, tg, i)
        where u.t is not null and u.tg is not null
        order by u.t, u.i
    ), inserted as (
        insert into {schema}.webhook_events (token) select firsts.t from firsts order by firsts.t
        on conflict do nothing returning token
    )
    select coalesce(array_agg(firsts.i), '{}') into fresh from firsts join inserted on inserted.token = firsts.t;

    -- Each message's updates in arrival order, on its row locked (messages in one order: no
    -- deadlock between batches) and read as committed now.
    for r in
        select u.i::int as i, u.tg, u.sid, u.status, u.rank, u.at, (u.t is null or f.i is not null) as is_fresh,
               s.status as row_status, s.status_rank as row_rank, s.status_at as row_at
        from unnest(target, p_sid, p_status, p_rank, p_at, p_token)
             with ordinality as u(tg, sid, status, rank, at, t, i)
        join {schema}.sends s on s.message_id = u.tg
        left join unnest(fresh) as f(i) on f.i = u.i
        order by u.tg, u.i
        for update of s
    loop
        if cur_target is distinct from r.tg then
            if changed then
                ids := ids || cur_target; statuses := statuses || cur_status; ranks := ranks || cur_rank;
                ats := ats || cur_at; sids := sids || cur_sid;
            end if;
            cur_target := r.tg; cur_status := r.row_status; cur_rank := r.row_rank; cur_at := r.row_at;
            cur_sid := null; changed := false;
        end if;
        if not r.is_fresh then
            outcome[r.i] := 'duplicate';
        elsif {schema}.status_advances(cur_status, cur_rank, r.status, r.rank) then
            outcome[r.i] := 'applied';
            cur_status := r.status; cur_rank := r.rank; cur_at := r.at; cur_sid := coalesce(cur_sid, r.sid);
            changed := true;
        else
            outcome[r.i] := 'stale';
        end if;
    end loop;
    if changed then
        ids := ids || cur_target; statuses := statuses || cur_status; ranks := ranks || cur_rank;
        ats := ats || cur_at; sids := sids || cur_sid;
    end if;

    -- As apply_status, once per message: a callback proves the provider created it.
    update {schema}.sends s
    set status = v.status, status_rank = v.rank, status_at = v.at,
        provider_id = coalesce(s.provider_id, v.sid),
        state = case when s.state in ('pending', 'submitting', 'unknown') then 'accepted' else s.state end,
        fence = case when s.state in ('pending', 'submitting', 'unknown') then s.fence + 1 else s.fence end,
        updated_at = case when s.state in ('pending', 'submitting', 'unknown') then now() else s.updated_at end
    from unnest(ids, statuses, ranks, ats, sids) as v(message_id, status, rank, at, sid)
    where s.message_id = v.message_id;
    return outcome;
end $$;
"""


def ddl(schema: str) -> str:
    """The statements that create (or bring up to date) the tables and functions in ``schema``."""
    final_statuses = sorted(status.value for status in MessageStatus if status.is_final)
    replacements = {
        "{schema}": check_schema_name(schema),
        "{all_states}": sql_list(state.value for state in SendState),
        "{open_states}": sql_list(state.value for state in OPEN_STATES),
        "{final_statuses}": sql_list(final_statuses),
        "{shard_mask}": str(COUNTER_SHARDS - 1),
    }
    text = _DDL
    for placeholder, value in replacements.items():
        text = text.replace(placeholder, value)
    return text


async def migrate(pool: Any, schema: str) -> None:
    """Create or update the schema's tables and functions; idempotent.

    Concurrent calls (several workers starting at once) queue on an advisory lock: ``create ... if
    not exists`` alone can still collide in the catalog.
    """
    statements = ddl(schema)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(hashtextextended($1, 0))", f"messaging_scale.migrate:{schema}")
        await conn.execute(statements)
