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
    -- nearest rank with quantilesExact: see decision_time_weekly
    SELECT
        operator_id,
        priority,
        window_start,
        countIf(decision = 1) AS decided,
        countIf(decision = 1 AND ok = 1) AS on_time,
        countIf(decision = 1 AND ok = 0) AS breached,
        quantilesExactIf(0.499999999999, 0.899999999999, 0.989999999999)(elapsed_ms, decision = 1) AS d_q,
        maxIf(elapsed_ms, decision = 1) AS d_max,
        sumIf(elapsed_ms, decision = 1) AS d_sum,
        countIf(decision = 0) AS acked,
        quantileExactIf(0.899999999999)(elapsed_ms, decision = 0) AS a_q
    FROM
    (
        SELECT
            operator_id,
            priority,
            decision,
            at,
            elapsed_ms,
            ok,
            (intDiv(at, %(step_ms)s) - arrayJoin(range(toUInt64(intDiv(%(size_ms)s + %(step_ms)s - 1, %(step_ms)s)))))
                * %(step_ms)s AS window_start
        FROM
        (
            SELECT toUInt8(1) AS decision, at, operator_id, priority, elapsed_ms, ok
            FROM reaction_decisions FINAL
            WHERE at >= %(since_ms)s
            UNION ALL
            SELECT toUInt8(0) AS decision, at, operator_id, priority, elapsed_ms, ok
            FROM reaction_acks FINAL
            WHERE at >= %(since_ms)s
        )
    )
    WHERE window_start > at - %(size_ms)s
    GROUP BY operator_id, priority, window_start
)
ORDER BY operator_id, priority, window_start
