"""The ledger's v3 schema (before tpot_ms), copied verbatim from the gateway that created it,
so the upgrade tests open databases exactly as those gateways left them and settle on them the
way they still do during a rolling update. Never edit: it is history, not the current schema.
"""

# sqlite_ops.SCHEMA before tpot_ms.
V3_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance_nano INTEGER NOT NULL,
    held_nano INTEGER NOT NULL DEFAULT 0,
    spend_limit_nano INTEGER,
    spend_period TEXT CHECK (spend_period IN ('day', 'month')),
    period_key TEXT NOT NULL DEFAULT '',
    period_spent_nano INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_holds (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount_nano INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_holds_by_expiry ON ledger_holds (expires_at);
CREATE TABLE IF NOT EXISTS ledger_usage (
    request_id TEXT PRIMARY KEY,
    hold_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    public_model TEXT NOT NULL,
    pool TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    input_reported INTEGER NOT NULL,
    output_reported INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    streamed INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    charged_nano INTEGER NOT NULL,
    capped INTEGER NOT NULL,
    receipt_status TEXT NOT NULL DEFAULT '',
    receipt TEXT,
    claimed_nano INTEGER,
    bill_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_usage_by_time ON ledger_usage (created_at);
CREATE TABLE IF NOT EXISTS ledger_receipt_proofs (
    request_id TEXT PRIMARY KEY,
    proof TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"""

# postgres_schema.TABLES and FUNCTIONS before tpot_ms.
V3_POSTGRES_TABLES = """
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
    bill_reason text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_usage_by_time ON ledger_usage (created_at);
CREATE TABLE IF NOT EXISTS ledger_receipt_proofs (
    request_id text PRIMARY KEY,
    proof text NOT NULL,
    created_at timestamptz NOT NULL
);
"""

V3_POSTGRES_FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION ledger_v3_period(spend_period text, step jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE spend_period WHEN 'day' THEN step->>'day' WHEN 'month' THEN step->>'month'
           ELSE '' END
$$""",
    """
CREATE OR REPLACE FUNCTION ledger_v3_account(step jsonb) RETURNS jsonb
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
    """
CREATE OR REPLACE FUNCTION ledger_v3_reserve(step jsonb) RETURNS jsonb
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
           OR CASE WHEN t.period_key = ledger_v3_period(t.spend_period, step)
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
    """
CREATE OR REPLACE FUNCTION ledger_v3_settle(step jsonb) RETURNS jsonb
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
        capped, receipt_status, receipt, claimed_nano, bill_reason)
    VALUES (step->>'hold', u->>'request_id', taken.account_id, u->>'public_model',
        u->>'pool', u->>'endpoint', u->>'upstream_model', (u->>'input_tokens')::bigint,
        (u->>'output_tokens')::bigint, (u->>'input_reported')::boolean,
        (u->>'output_reported')::boolean, cost, (u->>'latency_ms')::double precision,
        (u->>'ttft_ms')::double precision, (u->>'status')::integer, u->>'outcome',
        (u->>'streamed')::boolean, (u->>'created_at')::timestamptz, charged,
        claimed > charged, COALESCE(u->>'receipt_status', ''), u->>'receipt',
        (u->>'claimed_nano')::bigint, COALESCE(u->>'bill_reason', ''))
    ON CONFLICT (request_id) DO NOTHING;
    recorded := FOUND;
    IF NOT recorded THEN  -- settled already on another hold: release this one, charge nothing
        charged := 0;
    END IF;
    UPDATE ledger_accounts AS t SET
        held_nano = t.held_nano - taken.amount_nano,
        balance_nano = t.balance_nano - charged,
        period_spent_nano = CASE WHEN t.period_key = ledger_v3_period(t.spend_period, step)
                                 THEN t.period_spent_nano ELSE 0 END + charged,
        period_key = ledger_v3_period(t.spend_period, step)
    WHERE t.id = taken.account_id;
    IF NOT recorded THEN
        RETURN 'null'::jsonb;
    END IF;
    RETURN jsonb_build_object('charged', charged, 'capped', claimed > charged);
END $$""",
    """
CREATE OR REPLACE FUNCTION ledger_v3_release(step jsonb) RETURNS jsonb
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
    """
CREATE OR REPLACE FUNCTION ledger_v3_run(steps jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    step jsonb;
    results jsonb[] := '{}';
BEGIN
    FOR step IN SELECT value FROM jsonb_array_elements(steps) LOOP
        results := results || CASE step->>'op'
            WHEN 'reserve' THEN ledger_v3_reserve(step)
            WHEN 'settle' THEN ledger_v3_settle(step)
            WHEN 'release' THEN ledger_v3_release(step)
            WHEN 'account' THEN ledger_v3_account(step)
        END;
    END LOOP;
    RETURN to_jsonb(results);
END $$""",
]

# What a v3 gateway's SQLite settle inserts (rows.USAGE_INSERT_COLUMNS before tpot_ms).
V3_SQLITE_INSERT_USAGE = (
    "INSERT INTO ledger_usage (hold_id, request_id, account_id, public_model, pool, endpoint, "
    "upstream_model, input_tokens, output_tokens, input_reported, output_reported, cost_nano, "
    "latency_ms, ttft_ms, status, outcome, streamed, created_at, charged_nano, capped, "
    "receipt_status, receipt, claimed_nano, bill_reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (request_id) DO NOTHING"
)
