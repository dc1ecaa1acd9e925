-- title: Compliance per operator and priority
-- description: Over the last `days` routing days, per operator and priority: referrals routed,
--   decided, on time, breached (late or overdue undecided), pending, and compliance =
--   on_time / (on_time + breached). Same rules as compliance_daily, without the day.
-- param days = 30: routing days to look back from now_ms
-- param now_ms = 0: the clock, ms since the epoch (0: the server's now())
SELECT
    operator_id,
    priority,
    count() AS routed,
    countIf(decided_at IS NOT NULL) AS decided,
    countIf(decision_on_time = 1) AS on_time,
    countIf(decision_on_time = 0 OR (decided_at IS NULL AND decision_deadline < now_ms)) AS breached,
    countIf(decided_at IS NULL AND decision_deadline >= now_ms) AS pending,
    if(on_time + breached = 0, 1., round(on_time / (on_time + breached), 4)) AS compliance
FROM
(
    SELECT
        referral_id,
        operator_id,
        if(has_reaction = 1, x_priority, r_priority) AS priority,
        if(has_reaction = 1, x_routed_at, r_routed_at) AS routed_at,
        if(has_reaction = 1, x_deadline, r_deadline) AS decision_deadline,
        decided_at,
        decision_on_time,
        if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    FROM
    (
        SELECT referral_id, assumeNotNull(operator_id) AS operator_id, priority AS r_priority,
               routed_at AS r_routed_at, decision_deadline AS r_deadline
        FROM referrals FINAL
        WHERE routed = 1
    ) AS r
    ANY LEFT JOIN
    (
        SELECT referral_id, toUInt8(1) AS has_reaction, priority AS x_priority, routed_at AS x_routed_at,
               decision_deadline AS x_deadline, decided_at, decision_on_time
        FROM reactions FINAL
    ) AS x USING (referral_id)
)
WHERE routed_at >= now_ms - %(days)s * 86400000
GROUP BY operator_id, priority
ORDER BY operator_id, priority
