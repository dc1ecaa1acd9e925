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
        SELECT at, operator_id, priority, elapsed_ms
        FROM reaction_decisions FINAL
        WHERE at >= %(since_ms)s
    )
    WHERE %(priority)s = '' OR priority = %(priority)s
    GROUP BY bucket_start, operator_id
)
ORDER BY bucket_start, operator_id
