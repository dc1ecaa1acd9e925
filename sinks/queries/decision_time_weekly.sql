-- title: Time to decision per operator, priority and week
-- description: Nearest-rank p50, p90 and p99 (the smallest value with at least that share of the
--   values at or below it), max and mean of time_to_decision_ms, per ISO week (Monday) of the
--   decision, operator and priority, over the latest version of every reaction.
-- param weeks = 12: weeks of decisions to look back from now_ms
-- param now_ms = 0: the clock, ms since the epoch (0: the server's now())
SELECT
    week,
    operator_id,
    priority,
    n AS decided,
    q[1] AS p50_ms,
    q[2] AS p90_ms,
    q[3] AS p99_ms,
    max_ms,
    round(mean, 1) AS mean_ms
FROM
(
    -- Nearest rank with quantilesExact, which takes the value at 0-based index floor(level * n):
    -- floor((q - 1e-12) * n) = ceil(q * n) - 1 for every n below 10^9 (q in hundredths).
    -- Grouped by series, the number of (operator_id, priority), then named.
    SELECT
        toMonday(toDate(toDateTime(intDiv(at, 1000), 'UTC'))) AS week,
        series,
        count() AS n,
        quantilesExact(0.499999999999, 0.899999999999, 0.989999999999)(elapsed_ms) AS q,
        max(elapsed_ms) AS max_ms,
        avg(elapsed_ms) AS mean
    FROM
    (
        -- reaction_decisions (migration 0003): one row per decision, sorted by decided_at (`at`).
        -- FINAL reads in a single thread on 18.16: the two halves of the period, in parallel.
        WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
        SELECT at, series, elapsed_ms
        FROM reaction_decisions FINAL
        WHERE at >= now_ms - %(weeks)s * 604800000 AND at < now_ms - %(weeks)s * 302400000
        UNION ALL
        WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
        SELECT at, series, elapsed_ms
        FROM reaction_decisions FINAL
        WHERE at >= now_ms - %(weeks)s * 302400000
    )
    GROUP BY week, series
) AS weeks
ANY LEFT JOIN
(
    -- reaction_series: the names of each series (a series of two pairs stops the query)
    SELECT series, any(operator_id) AS operator_id, any(priority) AS priority
    FROM reaction_series FINAL
    GROUP BY series
    HAVING throwIf(count() > 1) = 0
) AS names USING (series)
ORDER BY week, operator_id, priority
