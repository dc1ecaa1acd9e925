-- title: Live reaction windows
-- description: Per operator and priority, the reaction window that covers the last hour up to
--   at_ms: among the windows containing at_ms, the one that started first (hopping windows over
--   decision time, as the pipeline publishes them; latest version of each window).
-- param at_ms = 0: the instant to look at, ms since the epoch (0: the server's now())
SELECT
    operator_id,
    priority,
    toDateTime(intDiv(window_start, 1000), 'UTC') AS start,
    toDateTime(intDiv(window_end, 1000), 'UTC') AS end,
    decided,
    on_time,
    breached,
    p50_ms,
    p90_ms,
    p99_ms,
    max_ms,
    mean_ms,
    acked,
    ack_p90_ms,
    closed
FROM
(
    SELECT *, if(%(at_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(at_ms)s)) AS at
    FROM reaction_windows FINAL
)
WHERE window_start <= at AND at < window_end
ORDER BY operator_id, priority, window_start
LIMIT 1 BY operator_id, priority
