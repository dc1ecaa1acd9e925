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
    if(decided = 0, 0, d_sorted[intDiv(decided * 50 + 99, 100)]) AS p50_ms,
    if(decided = 0, 0, d_sorted[intDiv(decided * 90 + 99, 100)]) AS p90_ms,
    if(decided = 0, 0, d_sorted[intDiv(decided * 99 + 99, 100)]) AS p99_ms,
    if(decided = 0, 0, d_sorted[decided]) AS max_ms,
    if(decided = 0, 0., d_sum / decided) AS mean_ms,
    acked,
    if(acked = 0, 0, a_sorted[intDiv(acked * 90 + 99, 100)]) AS ack_p90_ms
FROM
(
    SELECT
        operator_id,
        priority,
        window_start,
        countIf(kind = 'DECISION') AS decided,
        countIf(kind = 'DECISION' AND ok = 1) AS on_time,
        countIf(kind = 'DECISION' AND ok = 0) AS breached,
        arraySort(groupArrayIf(elapsed_ms, kind = 'DECISION')) AS d_sorted,
        sumIf(elapsed_ms, kind = 'DECISION') AS d_sum,
        countIf(kind = 'ACK') AS acked,
        arraySort(groupArrayIf(elapsed_ms, kind = 'ACK')) AS a_sorted
    FROM
    (
        SELECT
            operator_id,
            priority,
            kind,
            at,
            elapsed_ms,
            ok,
            (intDiv(at, %(step_ms)s) - arrayJoin(range(toUInt64(intDiv(%(size_ms)s + %(step_ms)s - 1, %(step_ms)s)))))
                * %(step_ms)s AS window_start
        FROM
        (
            SELECT operator_id, priority, 'DECISION' AS kind, assumeNotNull(decided_at) AS at,
                   assumeNotNull(time_to_decision_ms) AS elapsed_ms, assumeNotNull(decision_on_time) AS ok
            FROM reactions FINAL
            WHERE decided_at IS NOT NULL AND time_to_decision_ms IS NOT NULL
            UNION ALL
            SELECT operator_id, priority, 'ACK' AS kind, assumeNotNull(acked_at) AS at,
                   assumeNotNull(time_to_ack_ms) AS elapsed_ms, assumeNotNull(ack_on_time) AS ok
            FROM reactions FINAL
            WHERE acked_at IS NOT NULL AND time_to_ack_ms IS NOT NULL
        )
        WHERE at >= %(since_ms)s
    )
    WHERE window_start > at - %(size_ms)s
    GROUP BY operator_id, priority, window_start
)
ORDER BY operator_id, priority, window_start
