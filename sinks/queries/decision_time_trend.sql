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
    sum(n) AS decided,
    quantilesExactMerge(0.499999999999, 0.899999999999)(q)[1] AS p50_ms,
    quantilesExactMerge(0.499999999999, 0.899999999999)(q)[2] AS p90_ms
FROM
(
    -- nearest rank with quantilesExact: see decision_time_weekly; per bucket and series (the
    -- number of (operator_id, priority)), then named and merged per operator
    SELECT bucket_start, operator_id, priority, n, q
    FROM
    (
        SELECT
            intDiv(at, %(bucket_ms)s) * %(bucket_ms)s AS bucket_start,
            series,
            count() AS n,
            quantilesExactState(0.499999999999, 0.899999999999)(elapsed_ms) AS q
        FROM
        (
            -- reaction_decisions (migration 0003): one row per decision, sorted by decided_at
            -- (`at`). FINAL reads in a single thread on 18.16: two parts in parallel, split in the
            -- middle of the last 90 days (of the time since since_ms if that is shorter).
            WITH intDiv(greatest(%(since_ms)s, toInt64(toUnixTimestamp(now())) * 1000 - 7776000000)
                        + toInt64(toUnixTimestamp(now())) * 1000, 2) AS middle
            SELECT at, series, elapsed_ms
            FROM reaction_decisions FINAL
            WHERE at >= %(since_ms)s AND at < middle
            UNION ALL
            WITH intDiv(greatest(%(since_ms)s, toInt64(toUnixTimestamp(now())) * 1000 - 7776000000)
                        + toInt64(toUnixTimestamp(now())) * 1000, 2) AS middle
            SELECT at, series, elapsed_ms
            FROM reaction_decisions FINAL
            WHERE at >= %(since_ms)s AND at >= middle
        )
        GROUP BY bucket_start, series
    ) AS buckets
    ANY LEFT JOIN
    (
        -- reaction_series: the names of each series (a series of two pairs stops the query)
        SELECT series, any(operator_id) AS operator_id, any(priority) AS priority
        FROM reaction_series FINAL
        GROUP BY series
        HAVING throwIf(count() > 1) = 0
    ) AS names USING (series)
    WHERE %(priority)s = '' OR priority = %(priority)s
)
GROUP BY bucket_start, operator_id
ORDER BY bucket_start, operator_id
