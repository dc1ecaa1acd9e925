-- title: Time to decision per operator over time
-- description: Nearest-rank p50 and p90 of time_to_decision_ms per operator and time bucket of
--   the decision (bucket_ms wide, aligned to the epoch), optionally for one priority. The
--   report draws it as lines.
-- param bucket_ms = 86400000: bucket width in ms (default one day)
-- param priority = '': only this priority (CRITICAL, HIGH, STANDARD; empty: all)
-- param since_ms = 0: only decisions at or after this time, ms since the epoch
SELECT
    bucket_start,
    operator_id,
    n AS decided,
    q[1] AS p50_ms,
    q[2] AS p90_ms
FROM
(
    -- nearest rank with quantilesExact: see decision_time_weekly
    SELECT
        intDiv(at, %(bucket_ms)s) * %(bucket_ms)s AS bucket_start,
        operator_id,
        count() AS n,
        quantilesExact(0.499999999999, 0.899999999999)(elapsed_ms) AS q
    FROM
    (
        -- reaction_decisions (migration 0003): one row per decision, sorted by decided_at (`at`).
        -- FINAL reads in a single thread on 18.16: two parts in parallel, split in the middle of
        -- the last 90 days (of the time since since_ms if that is shorter).
        WITH intDiv(greatest(%(since_ms)s, toInt64(toUnixTimestamp(now())) * 1000 - 7776000000)
                    + toInt64(toUnixTimestamp(now())) * 1000, 2) AS middle
        SELECT at, operator_id, priority, elapsed_ms
        FROM reaction_decisions FINAL
        WHERE at >= %(since_ms)s AND at < middle
        UNION ALL
        WITH intDiv(greatest(%(since_ms)s, toInt64(toUnixTimestamp(now())) * 1000 - 7776000000)
                    + toInt64(toUnixTimestamp(now())) * 1000, 2) AS middle
        SELECT at, operator_id, priority, elapsed_ms
        FROM reaction_decisions FINAL
        WHERE at >= %(since_ms)s AND at >= middle
    )
    WHERE %(priority)s = '' OR priority = %(priority)s
    GROUP BY bucket_start, operator_id
)
ORDER BY bucket_start, operator_id
