-- Query tables: narrow copies of the event tables, sorted for the catalogue's queries.
--
-- Each is a ReplacingMergeTree fed by materialized views on the event tables (so the sink keeps
-- inserting into the event tables only, rows as data) and backfilled here from what those tables
-- already hold: the view first, then the backfill, so a row inserted in between lands twice and
-- is deduplicated like any redelivered row (re-running this migration is just as harmless).
-- Queries read them with FINAL. Their sort keys start with a time that every version of the row's
-- identity shares, so FINAL over a time range reads only that range:
--
-- * reaction_decisions / reaction_acks: a decision never changes once made and an
--   acknowledgement's time and delay are frozen (agents/logic/reactions.py), so every version of
--   a reaction that has decided_at (acked_at) has the same one: key (at, referral_id), latest
--   updated_at wins (an escalation after the acknowledgement changes the priority). `series`
--   numbers (operator_id, priority) for grouping; reaction_series has the names back.
-- * referral_reports: reporter_id and reported_at are the report's and never change between
--   versions of a referral: key (reported_at, referral_id, duplicate), latest version wins.
-- * referral_compliance: what compliance_* count, one row per (routed_at, referral_id): a
--   referral version's row, or the reaction's, which outranks it (version 2^32 + updated_at
--   against the referral's UInt32 version). A reaction keeps its referral's original routed_at,
--   which is also the routed_at of every version but an escalation's (that one re-routes:
--   escalated = 1, its own routed_at, once per referral); compliance_* resolve escalations, always
--   rare, with small IN sets.
-- * overdue_status: the overdue alerts, keyed like `overdue`, with one row per reaction that
--   acknowledged (ACK) or decided (DECISION) the referral, which outranks the alert (resolved = 1;
--   operator_id and priority empty there). One partition per kind (the two are read in parallel);
--   the kind stays in the key, so FINAL never merges rows of two partitions.
--
-- Aliases never reuse the name of a source column a WHERE of the same view reads (on 18.16 and
-- current releases the alias would win there).

CREATE TABLE IF NOT EXISTS {db}.reaction_decisions (
    at Int64,
    referral_id String,
    operator_id String,
    priority String,
    series UInt64,
    elapsed_ms Int64,
    ok UInt8,
    updated_at UInt64
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (at, referral_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.reaction_decisions_mv TO {db}.reaction_decisions AS
SELECT assumeNotNull(decided_at) AS at, referral_id, operator_id, priority, cityHash64(operator_id, priority) AS series,
       assumeNotNull(time_to_decision_ms) AS elapsed_ms, assumeNotNull(decision_on_time) AS ok, updated_at
FROM {db}.reactions
WHERE decided_at IS NOT NULL AND time_to_decision_ms IS NOT NULL;

INSERT INTO {db}.reaction_decisions (at, referral_id, operator_id, priority, series, elapsed_ms, ok, updated_at)
SELECT assumeNotNull(decided_at) AS at, referral_id, operator_id, priority, cityHash64(operator_id, priority) AS series,
       assumeNotNull(time_to_decision_ms) AS elapsed_ms, assumeNotNull(decision_on_time) AS ok, updated_at
FROM {db}.reactions
WHERE decided_at IS NOT NULL AND time_to_decision_ms IS NOT NULL;

CREATE TABLE IF NOT EXISTS {db}.reaction_acks (
    at Int64,
    referral_id String,
    operator_id String,
    priority String,
    series UInt64,
    elapsed_ms Int64,
    ok UInt8,
    updated_at UInt64
) ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (at, referral_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.reaction_acks_mv TO {db}.reaction_acks AS
SELECT assumeNotNull(acked_at) AS at, referral_id, operator_id, priority, cityHash64(operator_id, priority) AS series,
       assumeNotNull(time_to_ack_ms) AS elapsed_ms, assumeNotNull(ack_on_time) AS ok, updated_at
FROM {db}.reactions
WHERE acked_at IS NOT NULL AND time_to_ack_ms IS NOT NULL;

INSERT INTO {db}.reaction_acks (at, referral_id, operator_id, priority, series, elapsed_ms, ok, updated_at)
SELECT assumeNotNull(acked_at) AS at, referral_id, operator_id, priority, cityHash64(operator_id, priority) AS series,
       assumeNotNull(time_to_ack_ms) AS elapsed_ms, assumeNotNull(ack_on_time) AS ok, updated_at
FROM {db}.reactions
WHERE acked_at IS NOT NULL AND time_to_ack_ms IS NOT NULL;

-- series = cityHash64(operator_id, priority), by which the queries group reaction_decisions and
-- reaction_acks (a number groups faster than two strings), and back to the names. One row per pair
-- once merged; two pairs sharing a hash would show here as two rows under one series, and the
-- queries stop on that rather than merge them.
CREATE TABLE IF NOT EXISTS {db}.reaction_series (
    series UInt64,
    operator_id String,
    priority String
) ENGINE = ReplacingMergeTree
ORDER BY (series, operator_id, priority);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.reaction_series_mv TO {db}.reaction_series AS
SELECT cityHash64(operator_id, priority) AS series, operator_id, priority
FROM {db}.reactions
GROUP BY operator_id, priority;

INSERT INTO {db}.reaction_series (series, operator_id, priority)
SELECT cityHash64(operator_id, priority) AS series, operator_id, priority
FROM {db}.reactions
GROUP BY operator_id, priority;

-- duplicate: 0 for referrals (routed or unroutable), 1 for duplicates (label, instrument empty).
CREATE TABLE IF NOT EXISTS {db}.referral_reports (
    reported_at Int64,
    referral_id String,
    duplicate UInt8,
    reporter_id String,
    label String,
    instrument String,
    label_rejected UInt8,
    version UInt32
) ENGINE = ReplacingMergeTree(version)
ORDER BY (reported_at, referral_id, duplicate);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.referral_reports_mv TO {db}.referral_reports AS
SELECT reported_at, referral_id, toUInt8(0) AS duplicate, reporter_id, label, instrument, label_rejected, version
FROM {db}.referrals;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.referral_reports_dup_mv TO {db}.referral_reports AS
SELECT reported_at, referral_id, toUInt8(1) AS duplicate, reporter_id, '' AS label, '' AS instrument,
       toUInt8(0) AS label_rejected, toUInt32(0) AS version
FROM {db}.duplicates;

INSERT INTO {db}.referral_reports (reported_at, referral_id, duplicate, reporter_id, label, instrument, label_rejected, version)
SELECT reported_at, referral_id, toUInt8(0) AS duplicate, reporter_id, label, instrument, label_rejected, version
FROM {db}.referrals;

INSERT INTO {db}.referral_reports (reported_at, referral_id, duplicate, reporter_id, label, instrument, label_rejected, version)
SELECT reported_at, referral_id, toUInt8(1) AS duplicate, reporter_id, '' AS label, '' AS instrument,
       toUInt8(0) AS label_rejected, toUInt32(0) AS version
FROM {db}.duplicates;

-- reaction: 1 on a reaction's row (routed = 1, escalated = 0 there); decided_at and
-- decision_on_time are NULL on a referral's row.
CREATE TABLE IF NOT EXISTS {db}.referral_compliance (
    routed_at Int64,
    referral_id String,
    operator_id String,
    priority String,
    decision_deadline Int64,
    routed UInt8,
    escalated UInt8,
    reaction UInt8,
    decided_at Nullable(Int64),
    decision_on_time Nullable(UInt8),
    ver UInt64
) ENGINE = ReplacingMergeTree(ver)
ORDER BY (routed_at, referral_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.referral_compliance_mv TO {db}.referral_compliance AS
SELECT routed_at, referral_id, ifNull(operator_id, '') AS operator_id, priority, decision_deadline, routed, escalated,
       toUInt8(0) AS reaction, CAST(NULL AS Nullable(Int64)) AS decided_at,
       CAST(NULL AS Nullable(UInt8)) AS decision_on_time, toUInt64(version) AS ver
FROM {db}.referrals;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.referral_compliance_reaction_mv TO {db}.referral_compliance AS
SELECT routed_at, referral_id, operator_id, priority, decision_deadline, toUInt8(1) AS routed, toUInt8(0) AS escalated,
       toUInt8(1) AS reaction, decided_at, decision_on_time, toUInt64(4294967296) + updated_at AS ver
FROM {db}.reactions;

INSERT INTO {db}.referral_compliance (routed_at, referral_id, operator_id, priority, decision_deadline, routed, escalated,
                                      reaction, decided_at, decision_on_time, ver)
SELECT routed_at, referral_id, ifNull(operator_id, '') AS operator_id, priority, decision_deadline, routed, escalated,
       toUInt8(0) AS reaction, CAST(NULL AS Nullable(Int64)) AS decided_at,
       CAST(NULL AS Nullable(UInt8)) AS decision_on_time, toUInt64(version) AS ver
FROM {db}.referrals;

INSERT INTO {db}.referral_compliance (routed_at, referral_id, operator_id, priority, decision_deadline, routed, escalated,
                                      reaction, decided_at, decision_on_time, ver)
SELECT routed_at, referral_id, operator_id, priority, decision_deadline, toUInt8(1) AS routed, toUInt8(0) AS escalated,
       toUInt8(1) AS reaction, decided_at, decision_on_time, toUInt64(4294967296) + updated_at AS ver
FROM {db}.reactions;

CREATE TABLE IF NOT EXISTS {db}.overdue_status (
    referral_id String,
    deadline_kind String,
    operator_id String,
    priority String,
    deadline Int64,
    detected_at Int64,
    resolved UInt8
) ENGINE = ReplacingMergeTree(resolved)
PARTITION BY deadline_kind
ORDER BY (referral_id, deadline_kind);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.overdue_status_mv TO {db}.overdue_status AS
SELECT referral_id, deadline_kind, operator_id, priority, deadline, detected_at, toUInt8(0) AS resolved
FROM {db}.overdue;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.overdue_status_reaction_mv TO {db}.overdue_status AS
SELECT referral_id,
       arrayJoin(arrayConcat(if(acked_at IS NULL, emptyArrayString(), ['ACK']),
                             if(decided_at IS NULL, emptyArrayString(), ['DECISION']))) AS deadline_kind,
       '' AS operator_id, '' AS priority, toInt64(0) AS deadline, toInt64(0) AS detected_at, toUInt8(1) AS resolved
FROM {db}.reactions
WHERE acked_at IS NOT NULL OR decided_at IS NOT NULL;

INSERT INTO {db}.overdue_status (referral_id, deadline_kind, operator_id, priority, deadline, detected_at, resolved)
SELECT referral_id, deadline_kind, operator_id, priority, deadline, detected_at, toUInt8(0) AS resolved
FROM {db}.overdue;

INSERT INTO {db}.overdue_status (referral_id, deadline_kind, operator_id, priority, deadline, detected_at, resolved)
SELECT referral_id,
       arrayJoin(arrayConcat(if(acked_at IS NULL, emptyArrayString(), ['ACK']),
                             if(decided_at IS NULL, emptyArrayString(), ['DECISION']))) AS deadline_kind,
       '' AS operator_id, '' AS priority, toInt64(0) AS deadline, toInt64(0) AS detected_at, toUInt8(1) AS resolved
FROM {db}.reactions
WHERE acked_at IS NOT NULL OR decided_at IS NOT NULL;
