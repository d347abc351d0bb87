"""The SQL of ``PostgresLedger``: every statement it runs, for one schema.

``PostgresLedger`` reads as logic; the statements are here. Each state transition is one
``update ... where`` whose conditions are the rules of the protocol (claim only PENDING and due
rows; result writes only with the current fence), so two workers racing for one message are
ordered by PostgreSQL's row lock and the loser's statement simply matches no row. The tables,
functions and triggers the statements rely on are in ``messaging_scale._schema``.
"""

from __future__ import annotations

from messaging_core.campaigns import LEASE_EXPIRED
from messaging_scale._schema import OPEN_STATES, sql_list

__all__ = ["CREATE_STAGING_TABLE", "ENTRY_COLUMNS", "STAGING_COLUMNS", "STAGING_TABLE", "LedgerSql"]

ENTRY_COLUMNS = (
    "message_id, campaign_id, state, sender_key, cost, attempts, fence, provider_id, error_code, "
    "reconciled, status, claimed_at, lease_until, retry_at, last_error, "
    "extract(epoch from lease_until - now())::float8 as lease_left, "
    "extract(epoch from retry_at - now())::float8 as retry_in"
)
"""The columns of a ``LedgerEntry``, in every statement that returns one.

``lease_left``/``retry_in`` are measured on the database's clock, so a worker whose clock is
skewed still waits the right time."""

STAGING_TABLE = "sends_staging"
"""Where ``add`` copies a batch (``COPY``) before one ``insert ... on conflict do nothing`` (``LedgerSql.insert``)."""

STAGING_COLUMNS = ("ord", "message_id", "sender_key", "to_address", "payload", "cost")

CREATE_STAGING_TABLE = (
    f"create temp table {STAGING_TABLE} (ord int, message_id text, sender_key text, "
    "to_address text, payload text, cost int) on commit drop"
)


class LedgerSql:
    """The statements of one ledger schema, formatted once (the schema name is spliced into the text).

    :param schema: a schema name already checked by ``check_schema_name``.
    """

    def __init__(self, schema: str) -> None:
        s = schema
        self.insert = (
            f"insert into {s}.sends (message_id, campaign_id, sender_key, to_address, payload, cost) "
            "select message_id, $1, sender_key, to_address, payload::jsonb, cost "
            f"from {STAGING_TABLE} order by ord on conflict (message_id) do nothing"
        )
        self.campaigns_of = (
            f"select campaign_id, count(*)::bigint as n from {s}.sends where message_id = any($1::text[]) "
            "group by campaign_id"
        )
        self.claim = (
            f"update {s}.sends set state = 'submitting', attempts = attempts + 1, fence = fence + 1, "
            "claimed_at = now(), lease_until = now() + make_interval(secs => $2), updated_at = now(), "
            "deferred = false, claim_token = $3 "
            "where message_id = $1 and state = 'pending' and (retry_at is null or retry_at <= now()) "
            "returning fence, attempts, lease_until"
        )
        # Only the holder of the current claim writes, and only while the row is SUBMITTING: once
        # mark_unknown or a status callback has moved it, reconciliation owns the message.
        self.record = (
            f"update {s}.sends set state = $3, provider_id = coalesce($4, provider_id), error_code = $5, "
            "retry_at = case when $3 = 'pending' then now() + make_interval(secs => $6) else retry_at end, "
            "updated_at = now() "
            "where message_id = $1 and fence = $2 and state = 'submitting'"
        )
        # The claims of a batch (``PostgresLedger`` coalesces concurrent ones): the same rules as
        # ``claim``, row by row. Rows another transaction holds are skipped (no deadlock between
        # batches locking in different orders; their callers get the current entry and try again).
        # An id appears once ($1 is deduplicated by the caller).
        self.claim_batch = (
            "with req as (select * from unnest($1::text[], $2::text[], $3::float8[]) as r(message_id, token, lease)), "
            f"picked as (select s.message_id from {s}.sends s where s.message_id = any($1::text[]) "
            "and s.state = 'pending' and (s.retry_at is null or s.retry_at <= now()) "
            "order by s.message_id for update skip locked) "
            f"update {s}.sends t set state = 'submitting', attempts = t.attempts + 1, fence = t.fence + 1, "
            "claimed_at = now(), lease_until = now() + make_interval(secs => req.lease), updated_at = now(), "
            "deferred = false, claim_token = req.token "
            "from picked join req on req.message_id = picked.message_id "
            "where t.message_id = picked.message_id and t.state = 'pending' "
            "returning t.message_id, t.fence, t.attempts, t.lease_until"
        )
        self.get_many = f"select {ENTRY_COLUMNS} from {s}.sends where message_id = any($1::text[])"
        # The records of a batch, each fenced as ``record`` is. Rows are locked in one order first,
        # so that two batches (or a batch of status callbacks) touching the same rows queue
        # instead of deadlocking as far as they can.
        self.record_batch = (
            "with v as (select * from unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
            "$6::float8[]) as r(message_id, fence, state, provider_id, error_code, retry_after)), "
            f"locked as (select s.message_id from {s}.sends s join v on v.message_id = s.message_id "
            "and s.fence = v.fence where s.state = 'submitting' order by s.message_id for update of s) "
            f"update {s}.sends t set state = v.state, provider_id = coalesce(v.provider_id, t.provider_id), "
            "error_code = v.error_code, "
            "retry_at = case when v.state = 'pending' then now() + make_interval(secs => v.retry_after) "
            "else t.retry_at end, updated_at = now() "
            "from v join locked on locked.message_id = v.message_id "
            "where t.message_id = v.message_id and t.fence = v.fence and t.state = 'submitting' "
            "returning t.message_id, t.fence"
        )
        # A claim whose answer was lost (committed, then the connection dropped): given back by its token.
        self.release = (
            f"update {s}.sends set state = 'pending', claim_token = null, attempts = attempts - 1, "
            "fence = fence + 1, retry_at = null, lease_until = null, updated_at = now() "
            "where message_id = $1 and state = 'submitting' and claim_token = $2"
        )
        self.mark_unknown = (
            f"update {s}.sends set state = 'unknown', error_code = '{LEASE_EXPIRED}', updated_at = now() "
            "where message_id = $1 and fence = $2 and state = 'submitting' and lease_until <= now()"
        )
        # Both settle by a new fence, so the worker that held the claim can no longer write.
        # Proof of existence settles any message not final; "absent" never releases a live lease.
        # A provider id proves one message only: never one that another message holds.
        self.resolve_accepted = (
            f"update {s}.sends set state = 'accepted', provider_id = $2, reconciled = $3, error_code = null, "
            "fence = fence + 1, updated_at = now() "
            "where message_id = $1 and state in ('pending', 'submitting', 'unknown') "
            "and ($4::bigint is null or fence = $4) "
            f"and not exists (select 1 from {s}.sends held where held.provider_id = $2 and held.message_id <> $1)"
        )
        self.owner = f"select message_id from {s}.sends where provider_id = $1"
        self.open_to = f"select message_id from {s}.sends where to_address = $1 and state in ('submitting', 'unknown')"
        # A call answered with a provider id another message holds (see SendLedger.record): the
        # holder loses it and is in doubt again, under a new fence.
        self.holder_for_update = (
            f"select message_id, reconciled from {s}.sends where provider_id = $1 and message_id <> $2 for update"
        )
        self.reopen_holder = (
            f"update {s}.sends set state = 'unknown', provider_id = null, reconciled = false, "
            "error_code = $2, fence = fence + 1, updated_at = now() where message_id = $1"
        )
        self.hold_recording = (
            f"update {s}.sends set state = 'unknown', error_code = $3, updated_at = now() "
            "where message_id = $1 and fence = $2 and state = 'submitting'"
        )
        self.resolve_absent = (
            f"update {s}.sends set state = 'pending', retry_at = null, reconciled = $2, "
            "fence = fence + 1, updated_at = now() "
            "where message_id = $1 and (state = 'unknown' or (state = 'submitting' and lease_until <= now())) "
            "and ($3::bigint is null or fence = $3)"
        )
        self.cancel = (
            f"update {s}.sends set state = 'cancelled', updated_at = now() where campaign_id = $1 and state = 'pending'"
        )
        self.get = f"select {ENTRY_COLUMNS} from {s}.sends where message_id = $1"
        self.load = f"select payload::text from {s}.sends where message_id = $1"
        open_states = sql_list(state.value for state in OPEN_STATES)
        self.due = (
            f"select message_id from {s}.sends "
            f"where state in ({open_states}) and ($1::text is null or campaign_id = $1) and ("
            "(state = 'pending' and (retry_at is null or retry_at <= now())) "
            "or (state = 'submitting' and lease_until <= now()) "
            "or state = 'unknown') "
            "order by seq limit $2"
        )
        self.progress = (
            f"select state, sum(n)::bigint as n from {s}.campaign_counters "
            "where campaign_id = $1 group by state having sum(n) <> 0"
        )
        self.page = (
            f"select seq, {ENTRY_COLUMNS} from {s}.sends where campaign_id = $1 and seq > $2 order by seq limit $3"
        )

        # -- campaign control (the distributed dispatcher) --
        self.open_ids = (
            f"select message_id from {s}.sends where message_id = any($1::text[]) and state in ({open_states})"
        )
        self.open_messages = (
            "select s.message_id, s.campaign_id, s.payload::text as payload, c.connector, "
            "coalesce(c.paused, false) as paused, coalesce(c.cancelled, false) as cancelled "
            f"from {s}.sends s left join {s}.campaigns c on c.campaign_id = s.campaign_id "
            f"where s.message_id = any($1::text[]) and s.state in ({open_states})"
        )
        self.campaign_connector = f"select connector from {s}.campaigns where campaign_id = $1 for update"
        self.campaign_upsert = (
            f"insert into {s}.campaigns (campaign_id, connector) values ($1, $2) "
            "on conflict (campaign_id) do update set paused = false, cancelled = false, failure = null, "
            "updated_at = now()"
        )
        self.campaign = (
            "select campaign_id, connector, paused, cancelled, created_at, failure "
            f"from {s}.campaigns where campaign_id = $1"
        )
        # Resuming clears a failure too: whoever resumes says the cause is fixed.
        self.campaign_flags = (
            f"update {s}.campaigns set paused = coalesce($2, paused), cancelled = coalesce($3, cancelled), "
            "failure = case when $2 = false then null else failure end, updated_at = now() where campaign_id = $1"
        )
        self.fail_campaign = (
            f"update {s}.campaigns set paused = true, failure = $2, updated_at = now() where campaign_id = $1"
        )
        # Only a PENDING row: a claimed one may have been sent, and its fate is reconciliation's.
        self.note_failure = (
            f"update {s}.sends set failures = case when last_error = $2 then failures + 1 else 1 end, "
            "last_error = $2, "
            "state = case when (case when last_error = $2 then failures + 1 else 1 end) >= $3 "
            "then 'failed' else state end, "
            "error_code = case when (case when last_error = $2 then failures + 1 else 1 end) >= $3 "
            "then $4 else error_code end, updated_at = now() "
            "where message_id = $1 and state = 'pending' returning state"
        )
        self.take_turn = (
            f"insert into {s}.sweeps as w (name, next_at) values ($1, now() + make_interval(secs => $2)) "
            "on conflict (name) do update set next_at = excluded.next_at where w.next_at <= now() returning 1"
        )
        # Rows nobody has worked on for ``stale_after`` seconds although they need work (expired
        # leases sooner: ``expired_after`` seconds after the lease ended). Paused
        # campaigns are left alone; UNKNOWN rows only when the policy lets a worker reconcile them;
        # never-claimed PENDING rows only when the caller knows their chunks are not still queued.
        # A row kicked by a sweep is left alone for ``stale_after`` (kicked_at): a row that stays in
        # doubt, or held, does not crowd out the others sweep after sweep.
        # One branch per kind of candidate, each on its own partial index (``_schema``), so that a
        # sweep reads the rows that are due, not every open row. The locked rows are checked again.
        stale_for = "now() - make_interval(secs => $1)"
        not_kicked = f"(s.kicked_at is null or s.kicked_at <= {stale_for})"
        # (condition, the indexed time it is due by): the longest due of each kind first.
        branches = (
            # An expired lease is due ``$6`` seconds after it ended (a killed worker's message is
            # taken up in about one lease), unless a sweep already published it since then.
            (
                "s.state = 'submitting' and s.lease_until <= now() - make_interval(secs => $6) "
                f"and (s.kicked_at is null or s.kicked_at < s.lease_until or s.kicked_at <= {stale_for})",
                "s.lease_until",
            ),
            (f"$2 and s.state = 'unknown' and s.updated_at <= {stale_for} and {not_kicked}", "s.updated_at"),
            (
                f"s.state = 'pending' and s.attempts > 0 and coalesce(s.retry_at, s.updated_at) <= {stale_for} "
                f"and {not_kicked}",
                "coalesce(s.retry_at, s.updated_at)",
            ),
            (
                f"$3 and s.state = 'pending' and s.attempts = 0 and coalesce(s.retry_at, s.updated_at) <= {stale_for} "
                f"and {not_kicked}",
                "coalesce(s.retry_at, s.updated_at)",
            ),
        )
        candidates = " union all ".join(
            f"(select s.message_id, s.seq from {s}.sends s where {condition} "
            "and ($5::text is null or s.campaign_id = $5) "
            f"and not exists (select 1 from {s}.campaigns c where c.campaign_id = s.campaign_id and c.paused) "
            f"order by {due_by} limit $4)"
            for condition, due_by in branches
        )
        # The picked rows are fetched by id (an array, so that no plan joins them by a scan).
        self.stale = (
            f"with picked as (select s.message_id from {s}.sends s where s.message_id = any(array("
            f"select due.message_id from ({candidates}) as due order by due.seq limit $4)) "
            f"and s.state in ({open_states}) order by s.seq for update of s skip locked) "
            f"update {s}.sends t set kicked_at = now() from picked where t.message_id = picked.message_id "
            "returning t.message_id"
        )
        self.defer = (
            f"update {s}.sends set retry_at = now() + make_interval(secs => $2), deferred = true, updated_at = now() "
            "where message_id = any($1::text[]) and state = 'pending'"
        )
        # Deferred rows whose time has come: a pace slot too far for a worker to sleep through, a
        # retry due later than it would hold a chunk. Earliest first.
        self.wake = (
            f"with picked as (select s.message_id from {s}.sends s "
            f"left join {s}.campaigns c on c.campaign_id = s.campaign_id "
            "where s.deferred and s.state = 'pending' and s.retry_at <= now() and not coalesce(c.paused, false) "
            "and (s.kicked_at is null or s.kicked_at < s.retry_at or s.kicked_at <= now() - make_interval(secs => $2)) "
            "order by s.retry_at limit $1 for update of s skip locked) "
            f"update {s}.sends t set kicked_at = now() from picked "
            "where t.message_id = picked.message_id returning t.message_id"
        )
        self.open_page = (
            f"select seq, message_id from {s}.sends where campaign_id = $1 and seq > $2 "
            f"and state in ({open_states}) order by seq limit $3"
        )
        self.held = (
            f"select {ENTRY_COLUMNS} from {s}.sends where state = 'unknown' "
            "and ($1::text is null or campaign_id = $1) order by seq limit $2"
        )
