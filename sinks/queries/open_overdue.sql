-- title: Open overdue referrals
-- description: Overdue alerts still open: an ACK alert whose referral has not been acknowledged
--   since, a DECISION alert whose referral has not been decided since (per the reactions table,
--   which holds only the decisions the pipeline accepted). Oldest deadline first.
-- param now_ms = 0: the clock, ms since the epoch (0: the server's now())
SELECT
    referral_id,
    operator_id,
    priority,
    deadline_kind,
    toDateTime(intDiv(deadline, 1000), 'UTC') AS deadline_at,
    toDateTime(intDiv(detected_at, 1000), 'UTC') AS detected,
    intDiv(now_ms - deadline, 1000) AS overdue_s
FROM
(
    SELECT referral_id, operator_id, priority, deadline_kind, deadline, detected_at,
           if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    FROM overdue FINAL
) AS o
ANY LEFT JOIN
(
    SELECT referral_id, acked_at, decided_at
    FROM reactions FINAL
) AS x USING (referral_id)
WHERE (deadline_kind = 'ACK' AND acked_at IS NULL) OR (deadline_kind = 'DECISION' AND decided_at IS NULL)
ORDER BY deadline, referral_id, deadline_kind
