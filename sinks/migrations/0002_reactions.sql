-- Reactions and the rolling reaction windows (latest updated_at wins).
-- updated_at is UInt64: a ReplacingMergeTree version column must be unsigned.

-- reactions: one row per referral, re-emitted on acknowledgement and on decision.
CREATE TABLE IF NOT EXISTS {db}.reactions (
    referral_id String,
    operator_id String,
    reporter_id String,
    priority String,
    category String,
    reported_at Int64,
    routed_at Int64,
    acked_at Nullable(Int64),
    decided_at Nullable(Int64),
    action Nullable(String),
    time_to_ack_ms Nullable(Int64),
    time_to_decision_ms Nullable(Int64),
    ack_on_time Nullable(UInt8),
    decision_on_time Nullable(UInt8),
    ack_deadline Int64,
    decision_deadline Int64,
    updated_at UInt64,
    routed_at_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(routed_at, 1000), 'UTC'),
    decided_at_dt Nullable(DateTime('UTC')) MATERIALIZED toDateTime(intDiv(decided_at, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY referral_id;

-- reaction.windows: hopping windows over decision time, one row per (operator, priority, start).
CREATE TABLE IF NOT EXISTS {db}.reaction_windows (
    operator_id String,
    priority String,
    window_start Int64,
    window_end Int64,
    decided Int64,
    on_time Int64,
    breached Int64,
    p50_ms Int64,
    p90_ms Int64,
    p99_ms Int64,
    max_ms Int64,
    mean_ms Float64,
    acked Int64,
    ack_p90_ms Int64,
    updated_at UInt64,
    closed UInt8,
    window_start_dt DateTime('UTC') MATERIALIZED toDateTime(intDiv(window_start, 1000), 'UTC')
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (operator_id, priority, window_start);
