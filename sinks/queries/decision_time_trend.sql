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
    sorted[intDiv(n * 50 + 99, 100)] AS p50_ms,
    sorted[intDiv(n * 90 + 99, 100)] AS p90_ms
FROM
(
    SELECT
        intDiv(decided, %(bucket_ms)s) * %(bucket_ms)s AS bucket_start,
        operator_id,
        count() AS n,
        arraySort(groupArray(ttd)) AS sorted
    FROM
    (
        SELECT operator_id, priority, assumeNotNull(decided_at) AS decided,
               assumeNotNull(time_to_decision_ms) AS ttd
        FROM reactions FINAL
        WHERE decided_at IS NOT NULL AND time_to_decision_ms IS NOT NULL
    )
    WHERE decided >= %(since_ms)s AND (%(priority)s = '' OR priority = %(priority)s)
    GROUP BY bucket_start, operator_id
)
ORDER BY bucket_start, operator_id
