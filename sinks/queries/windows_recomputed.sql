-- title: Reaction windows recomputed from the reactions
-- description: The hopping windows (size_ms wide, every step_ms, aligned to the epoch) recomputed
--   in batch from the latest version of every reaction, with exact nearest-rank percentiles: a
--   check of the streamed reaction_windows, or a backfill. Decision figures are over the
--   decisions whose decided_at falls in the window, acked/ack_p90_ms over the acknowledgements
--   whose acked_at does (each under the reaction's current priority). Percentiles are 0 when
--   the window has no value of their kind.
-- param size_ms = 3600000: window size in ms (default 1 h)
-- param step_ms = 300000: window step in ms (default 5 min)
-- param since_ms = 0: only events at or after this time, ms since the epoch
SELECT
    operator_id,
    priority,
    window_start,
    window_start + %(size_ms)s AS window_end,
    decided,
    on_time,
    breached,
    if(decided = 0, 0, d_q[1]) AS p50_ms,
    if(decided = 0, 0, d_q[2]) AS p90_ms,
    if(decided = 0, 0, d_q[3]) AS p99_ms,
    if(decided = 0, 0, d_max) AS max_ms,
    if(decided = 0, 0., d_sum / decided) AS mean_ms,
    acked,
    if(acked = 0, 0, a_q) AS ack_p90_ms
FROM
(
    -- The windows from the panes: a value at t is in the windows starting at
    -- (intDiv(t, step) - i) * step, i < k = ceil(size / step), that start after t - size, i.e. in all
    -- k unless its offset in the pane, t - intDiv(t, step) * step, reaches size - (k - 1) * step
    -- (never when size is a multiple of step): such a `late` part of a pane is in the first k - 1.
    -- Nearest rank with quantilesExact: see decision_time_weekly.
    WITH toUInt64(intDiv(%(size_ms)s + %(step_ms)s - 1, %(step_ms)s)) AS k
    SELECT
        series,
        (pane - arrayJoin(range(toUInt64(k - late)))) * %(step_ms)s AS window_start,
        sum(p_decided) AS decided,
        sum(p_on_time) AS on_time,
        sum(p_breached) AS breached,
        quantilesExactArray(0.499999999999, 0.899999999999, 0.989999999999)(p_d) AS d_q,
        max(p_d_max) AS d_max,
        sum(p_d_sum) AS d_sum,
        sum(p_acked) AS acked,
        quantileExactArray(0.899999999999)(p_a) AS a_q
    FROM
    (
        -- panes, step_ms wide and aligned to the epoch, per series: the number of (operator_id,
        -- priority), named at the end
        WITH toUInt64(intDiv(%(size_ms)s + %(step_ms)s - 1, %(step_ms)s)) AS k
        SELECT
            series,
            intDiv(at, %(step_ms)s) AS pane,
            toUInt64(at - pane * %(step_ms)s >= %(size_ms)s - (k - 1) * %(step_ms)s) AS late,
            countIf(decision = 1) AS p_decided,
            countIf(decision = 1 AND ok = 1) AS p_on_time,
            countIf(decision = 1 AND ok = 0) AS p_breached,
            groupArrayIf(elapsed_ms, decision = 1) AS p_d,
            maxIf(elapsed_ms, decision = 1) AS p_d_max,
            sumIf(elapsed_ms, decision = 1) AS p_d_sum,
            countIf(decision = 0) AS p_acked,
            groupArrayIf(elapsed_ms, decision = 0) AS p_a
        FROM
        (
            -- reaction_decisions and reaction_acks (migration 0003), sorted by decided_at /
            -- acked_at (`at`): read in parallel
            SELECT toUInt8(1) AS decision, at, series, elapsed_ms, ok
            FROM reaction_decisions FINAL
            WHERE at >= %(since_ms)s
            UNION ALL
            SELECT toUInt8(0) AS decision, at, series, elapsed_ms, ok
            FROM reaction_acks FINAL
            WHERE at >= %(since_ms)s
        )
        GROUP BY series, pane, late
    )
    GROUP BY series, window_start
) AS windows
ANY LEFT JOIN
(
    -- reaction_series: the names of each series (a series of two pairs stops the query)
    SELECT series, any(operator_id) AS operator_id, any(priority) AS priority
    FROM reaction_series FINAL
    GROUP BY series
    HAVING throwIf(count() > 1) = 0
) AS names USING (series)
ORDER BY operator_id, priority, window_start
-- every window's values at once: a recomputation of months holds more than the stack's 2 GB per
-- query, so past 1 GB the aggregation spills to disk
SETTINGS max_bytes_before_external_group_by = 1000000000
