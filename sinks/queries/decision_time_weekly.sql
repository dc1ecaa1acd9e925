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
    sorted[intDiv(n * 50 + 99, 100)] AS p50_ms,
    sorted[intDiv(n * 90 + 99, 100)] AS p90_ms,
    sorted[intDiv(n * 99 + 99, 100)] AS p99_ms,
    sorted[n] AS max_ms,
    round(mean, 1) AS mean_ms
FROM
(
    SELECT
        toMonday(toDate(toDateTime(intDiv(decided, 1000), 'UTC'))) AS week,
        operator_id,
        priority,
        count() AS n,
        arraySort(groupArray(ttd)) AS sorted,
        avg(ttd) AS mean
    FROM
    (
        SELECT operator_id, priority, assumeNotNull(decided_at) AS decided,
               assumeNotNull(time_to_decision_ms) AS ttd,
               if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
        FROM reactions FINAL
        WHERE decided_at IS NOT NULL AND time_to_decision_ms IS NOT NULL
    )
    WHERE decided >= now_ms - %(weeks)s * 604800000
    GROUP BY week, operator_id, priority
)
ORDER BY week, operator_id, priority
