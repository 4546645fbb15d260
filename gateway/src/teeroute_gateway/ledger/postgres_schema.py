"""The PostgreSQL ledger's schema: tables, and the functions that run a batch server-side.

Created by PostgresLedger.open (idempotent; gateways starting together take turns on an
advisory lock). The hot operations — reserve, settle, release, account lookups — are
PL/pgSQL functions, and `ledger_v4_run(steps jsonb)` runs a whole batch of them in one
statement: a batch costs the gateway one round trip and one statement's client work instead
of one per operation (psycopg spends tens of microseconds of the gateway's core per statement).
Each step is one operation, in the order given; the caller orders steps by account so that
concurrent batches lock accounts in the same order and cannot deadlock.

Balance rules inside: a reserve is one conditional UPDATE (under READ COMMITTED, an UPDATE
that waited for a concurrent one re-checks its condition on the row as that one left it), so
no number of gateways can hold more than the balance.

Upgrades. Gateways of two versions share the database during a rolling update, and each
(re)defines its functions whenever it opens the ledger, so:
* Functions carry the version of this set in their name (ledger_v4_*). When any function's
  signature or behaviour changes, the whole set moves to the next version (v1 -> v2: settle
  stores the usage receipt; v2 -> v3: settle stores the claimed cost and the bill's reason,
  and `capped` means charged less than claimed; v3 -> v4: settle stores the stream's TPOT,
  `tpot_ms`); a released version's functions are never redefined differently, and older
  ones are left in place for the older gateways still calling them (drop them by hand once
  none runs).
* Tables are only ever added (CREATE TABLE IF NOT EXISTS: ledger_receipt_proofs, wire v2's
  receipt proofs, written by plain statements, so no function changed) and only ever gain
  columns, each with a default (NULL or a constant), so the older
  functions' INSERTs still work, listed in ADDED_COLUMNS; nothing is renamed or dropped. A
  database made by an older version gets them by `ADD COLUMN IF NOT EXISTS`, run only when the
  catalog shows one missing: ALTER TABLE takes an exclusive lock, which would queue every
  replica's settles behind a long report query if taken on each open.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

SCHEMA_LOCK = 0x7465_6572  # pg_advisory_xact_lock key
log = logging.getLogger(__name__)

TABLES = """
CREATE TABLE IF NOT EXISTS ledger_accounts (
    id text PRIMARY KEY,
    name text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    currency text NOT NULL,
    balance_nano bigint NOT NULL,
    held_nano bigint NOT NULL DEFAULT 0,
    spend_limit_nano bigint,
    spend_period text CHECK (spend_period IN ('day', 'month')),
    period_key text NOT NULL DEFAULT '',
    period_spent_nano bigint NOT NULL DEFAULT 0,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_holds (
    id text PRIMARY KEY,
    account_id text NOT NULL REFERENCES ledger_accounts (id),
    amount_nano bigint NOT NULL,
    request_id text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_holds_by_expiry ON ledger_holds (expires_at);
CREATE TABLE IF NOT EXISTS ledger_usage (
    request_id text PRIMARY KEY,
    hold_id text NOT NULL,
    account_id text NOT NULL REFERENCES ledger_accounts (id),
    public_model text NOT NULL,
    pool text NOT NULL,
    endpoint text NOT NULL,
    upstream_model text NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    input_reported boolean NOT NULL,
    output_reported boolean NOT NULL,
    cost_nano bigint NOT NULL,
    latency_ms double precision NOT NULL,
    ttft_ms double precision,
    status integer NOT NULL,
    outcome text NOT NULL,
    streamed boolean NOT NULL,
    created_at timestamptz NOT NULL,
    charged_nano bigint NOT NULL,
    capped boolean NOT NULL,
    receipt_status text NOT NULL DEFAULT '',
    receipt text,
    claimed_nano bigint,
    bill_reason text NOT NULL DEFAULT '',
    tpot_ms double precision
);
CREATE INDEX IF NOT EXISTS ledger_usage_by_time ON ledger_usage (created_at);
CREATE TABLE IF NOT EXISTS ledger_receipt_proofs (
    request_id text PRIMARY KEY,
    proof text NOT NULL,
    created_at timestamptz NOT NULL
);
"""

# Columns added since the first schema (v1), in order: (table, column, definition).
ADDED_COLUMNS = (
    ("ledger_usage", "receipt_status", "text NOT NULL DEFAULT ''"),  # v2: sealed mode
    ("ledger_usage", "receipt", "text"),
    ("ledger_usage", "claimed_nano", "bigint"),  # v3: billing, what the miner claimed
    ("ledger_usage", "bill_reason", "text NOT NULL DEFAULT ''"),
    ("ledger_usage", "tpot_ms", "double precision"),  # v4: a stream's time per output token
)

# Each function is one statement (no semicolons outside the $$ bodies matter: run one by one).
FUNCTIONS = [
    # The period key an account's spend belongs to now ('' without a spend period).
    """
CREATE OR REPLACE FUNCTION ledger_v4_period(spend_period text, step jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE spend_period WHEN 'day' THEN step->>'day' WHEN 'month' THEN step->>'month'
           ELSE '' END
$$""",
    # An account as rows.ACCOUNT_COLUMNS, by id or by key hash (enabled accounts only).
    """
CREATE OR REPLACE FUNCTION ledger_v4_account(step jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE a ledger_accounts%ROWTYPE;
BEGIN
    IF step ? 'key_hash' THEN
        SELECT * INTO a FROM ledger_accounts WHERE key_hash = step->>'key_hash' AND NOT disabled;
    ELSE
        SELECT * INTO a FROM ledger_accounts WHERE id = step->>'account';
    END IF;
    IF NOT FOUND THEN
        RETURN 'null'::jsonb;
    END IF;
    RETURN jsonb_build_array(a.id, a.name, a.key_prefix, a.currency, a.balance_nano,
        a.held_nano, a.spend_limit_nano, a.spend_period, a.disabled);
END $$""",
    # {"granted": true}, or the account as periods.Standing for the refusal, or {} if none.
    # Idempotent by hold id, so that a batch can be sent again after a lost connection.
    """
CREATE OR REPLACE FUNCTION ledger_v4_reserve(step jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    want bigint := (step->>'amount')::bigint;
    a ledger_accounts%ROWTYPE;
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_holds WHERE id = step->>'hold') THEN
        RETURN '{"granted": true}'::jsonb;  -- sent again after a lost connection: granted
    END IF;
    UPDATE ledger_accounts AS t SET held_nano = t.held_nano + want
    WHERE t.id = step->>'account' AND NOT t.disabled AND t.balance_nano - t.held_nano >= want
      AND (t.spend_limit_nano IS NULL
           OR CASE WHEN t.period_key = ledger_v4_period(t.spend_period, step)
                   THEN t.period_spent_nano ELSE 0 END + t.held_nano + want
              <= t.spend_limit_nano);
    IF FOUND THEN
        INSERT INTO ledger_holds (id, account_id, amount_nano, request_id, expires_at)
        VALUES (step->>'hold', step->>'account', want, step->>'request',
                (step->>'expires')::timestamptz);
        RETURN '{"granted": true}'::jsonb;
    END IF;
    SELECT * INTO a FROM ledger_accounts WHERE id = step->>'account';
    IF NOT FOUND THEN
        RETURN '{}'::jsonb;
    END IF;
    RETURN jsonb_build_object('standing', jsonb_build_array(a.id, a.balance_nano,
        a.held_nano, a.spend_limit_nano, a.spend_period, a.period_key, a.period_spent_nano,
        a.disabled));
END $$""",
    # Charge min(cost, hold) and record the usage: {"charged": n, "capped": b}; null when the
    # hold is gone or the request already recorded (nothing charged; the caller looks it up).
    """
CREATE OR REPLACE FUNCTION ledger_v4_settle(step jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    taken record;
    u jsonb := step->'usage';
    cost bigint := (u->>'cost_nano')::bigint;
    claimed bigint := GREATEST(cost, COALESCE((u->>'claimed_nano')::bigint, 0));
    charged bigint;
    recorded boolean;
BEGIN
    DELETE FROM ledger_holds WHERE id = step->>'hold'
    RETURNING account_id, amount_nano INTO taken;
    IF NOT FOUND THEN
        RETURN 'null'::jsonb;
    END IF;
    charged := LEAST(cost, taken.amount_nano);
    INSERT INTO ledger_usage (hold_id, request_id, account_id, public_model, pool, endpoint,
        upstream_model, input_tokens, output_tokens, input_reported, output_reported,
        cost_nano, latency_ms, ttft_ms, status, outcome, streamed, created_at, charged_nano,
        capped, receipt_status, receipt, claimed_nano, bill_reason, tpot_ms)
    VALUES (step->>'hold', u->>'request_id', taken.account_id, u->>'public_model',
        u->>'pool', u->>'endpoint', u->>'upstream_model', (u->>'input_tokens')::bigint,
        (u->>'output_tokens')::bigint, (u->>'input_reported')::boolean,
        (u->>'output_reported')::boolean, cost, (u->>'latency_ms')::double precision,
        (u->>'ttft_ms')::double precision, (u->>'status')::integer, u->>'outcome',
        (u->>'streamed')::boolean, (u->>'created_at')::timestamptz, charged,
        claimed > charged, COALESCE(u->>'receipt_status', ''), u->>'receipt',
        (u->>'claimed_nano')::bigint, COALESCE(u->>'bill_reason', ''),
        (u->>'tpot_ms')::double precision)
    ON CONFLICT (request_id) DO NOTHING;
    recorded := FOUND;
    IF NOT recorded THEN  -- settled already on another hold: release this one, charge nothing
        charged := 0;
    END IF;
    UPDATE ledger_accounts AS t SET
        held_nano = t.held_nano - taken.amount_nano,
        balance_nano = t.balance_nano - charged,
        period_spent_nano = CASE WHEN t.period_key = ledger_v4_period(t.spend_period, step)
                                 THEN t.period_spent_nano ELSE 0 END + charged,
        period_key = ledger_v4_period(t.spend_period, step)
    WHERE t.id = taken.account_id;
    IF NOT recorded THEN
        RETURN 'null'::jsonb;
    END IF;
    RETURN jsonb_build_object('charged', charged, 'capped', claimed > charged);
END $$""",
    # Drop a hold without charging: whether it was still there.
    """
CREATE OR REPLACE FUNCTION ledger_v4_release(step jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE taken record;
BEGIN
    DELETE FROM ledger_holds WHERE id = step->>'hold'
    RETURNING account_id, amount_nano INTO taken;
    IF NOT FOUND THEN
        RETURN 'false'::jsonb;
    END IF;
    UPDATE ledger_accounts SET held_nano = held_nano - taken.amount_nano
    WHERE id = taken.account_id;
    RETURN 'true'::jsonb;
END $$""",
    # A batch: one result per step, in order.
    """
CREATE OR REPLACE FUNCTION ledger_v4_run(steps jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    step jsonb;
    results jsonb[] := '{}';
BEGIN
    FOR step IN SELECT value FROM jsonb_array_elements(steps) LOOP
        results := results || CASE step->>'op'
            WHEN 'reserve' THEN ledger_v4_reserve(step)
            WHEN 'settle' THEN ledger_v4_settle(step)
            WHEN 'release' THEN ledger_v4_release(step)
            WHEN 'account' THEN ledger_v4_account(step)
        END;
    END LOOP;
    RETURN to_jsonb(results);
END $$""",
]


def create_schema(conn: psycopg.Connection[Any]) -> None:
    """Create what is missing, add the columns an older database lacks, and (re)define this
    version's functions, in one transaction."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for statement in filter(str.strip, TABLES.split(";")):
            conn.execute(statement)
        _add_columns(conn)
        for function in FUNCTIONS:
            conn.execute(function)


def _add_columns(conn: psycopg.Connection[Any]) -> None:
    """Add the ADDED_COLUMNS the tables (as the search path finds them, like the functions
    do) lack; the catalog is read first so that nothing is locked when nothing is missing."""
    for table, column, definition in ADDED_COLUMNS:
        found = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
            "AND attnum > 0 AND NOT attisdropped",
            (table, column),
        ).fetchone()
        if found is None:
            log.info("ledger upgrade: adding %s.%s", table, column)
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(table), sql.Identifier(column), sql.SQL(definition)
                )
            )
