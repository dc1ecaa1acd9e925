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
    intDiv(if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) - deadline, 1000) AS overdue_s
FROM
(
    -- overdue_status: the alerts, each outranked (resolved = 1) by a reaction that acknowledged
    -- (ACK) or decided (DECISION) its referral; one partition per kind, read in parallel
    SELECT referral_id, operator_id, priority, deadline_kind, deadline, detected_at, resolved
    FROM overdue_status FINAL
    WHERE deadline_kind = 'ACK'
    UNION ALL
    SELECT referral_id, operator_id, priority, deadline_kind, deadline, detected_at, resolved
    FROM overdue_status FINAL
    WHERE deadline_kind = 'DECISION'
)
WHERE resolved = 0
ORDER BY deadline, referral_id, deadline_kind
