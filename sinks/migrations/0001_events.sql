-- The pipeline's event tables: one row per event, columns named as the Avro fields.
-- Times are timestamp-millis in Int64 columns (no DateTime64 on 18.16), with a MATERIALIZED
-- `<field>_dt` DateTime('UTC') (second precision) for date functions; SELECT * leaves those out.
-- Booleans are UInt8 (0/1), enums String. ReplacingMergeTree keyed by the event identity: a
-- redelivered event lands as one more copy that FINAL / argMax hide until a merge removes it.
-- No PARTITION BY: every identity must stay in one partition for the dedup, and the only time
-- fields that are stable across versions come from reporters and operators (unbounded values).

-- referrals.accepted (routed = 1) and referrals.unroutable (routed = 0, operator_id NULL).
-- Latest `version` wins (an escalation re-issues the referral with a higher version).
CREATE TABLE IF NOT EXISTS {db}.referrals (
    referral_id String,
    reporter_id String,
    external_ref Nullable(String),
    instrument String,
    label String,
    emergency UInt8,
    category String,
    url String,
    operator_id Nullable(String),
    content_hashes Nested(algo String, value String),
    legal_basis String,
    reasons String,
    jurisdiction String,
    language Nullable(String),
    reported_at Int64,
    normalized_url String,
    priority String,
    label_verified UInt8,
    label_rejected UInt8,
    routed_at Int64,
    ack_deadline Int64,
    decision_deadline Int64,
    co_reporters Array(String),
    escalated UInt8,
    version UInt32,
    routed UInt8,
    reported_at_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(reported_at, 1000), 'UTC'),
    routed_at_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(routed_at, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(version)
ORDER BY referral_id;

-- referrals.duplicates: one row per duplicate referral.
CREATE TABLE IF NOT EXISTS {db}.duplicates (
    referral_id String,
    canonical_referral_id String,
    reporter_id String,
    normalized_url String,
    operator_id String,
    reported_at Int64,
    priority String,
    escalated UInt8,
    detected_at Int64,
    reported_at_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(reported_at, 1000), 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY referral_id;

-- referrals.rejected: the dead letters, original bytes kept raw in String columns.
CREATE TABLE IF NOT EXISTS {db}.rejections (
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    key Nullable(String),
    value String,
    error_code String,
    error String,
    rejected_at Int64,
    value_length UInt64 MATERIALIZED length(value),
    rejected_at_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(rejected_at, 1000), 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset);

-- operator.<operator_id>.decisions, as the operators published them (also the ones the pipeline
-- rejects: topic_operator_id is the operator whose topic carried it; a decision with
-- operator_id != topic_operator_id is forged).
CREATE TABLE IF NOT EXISTS {db}.decisions (
    referral_id String,
    operator_id String,
    action String,
    acted_at Int64,
    reason Nullable(String),
    operator_ref Nullable(String),
    topic_operator_id String,
    acted_at_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(acted_at, 1000), 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (referral_id, operator_id, acted_at, action);

-- referrals.overdue: at most one alert per referral and deadline kind.
CREATE TABLE IF NOT EXISTS {db}.overdue (
    referral_id String,
    operator_id String,
    priority String,
    deadline_kind String,
    deadline Int64,
    detected_at Int64,
    deadline_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(deadline, 1000), 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (referral_id, deadline_kind);
