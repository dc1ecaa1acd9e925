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
    -- referral_compliance (migration 0003): per (routed_at, referral_id), the reaction if there is
    -- one, else the latest version of the referral routed then. An escalation (escalated = 1)
    -- re-routes at its own routed_at: it supersedes the referral's first row, and counts only while
    -- the referral has no reaction (a reaction keeps the first routed_at). Escalations are rare:
    -- the IN sets below are small.
    SELECT routed_at, operator_id, priority, decision_deadline, decided_at, decision_on_time,
           if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    FROM
    (
        -- FINAL reads in a single thread on 18.16: the two halves of the period, in parallel
        WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
        SELECT referral_id, routed_at, operator_id, priority, decision_deadline, routed, escalated, reaction,
               decided_at, decision_on_time
        FROM referral_compliance FINAL
        WHERE routed_at >= now_ms - %(days)s * 86400000 AND routed_at < now_ms - %(days)s * 43200000
        UNION ALL
        WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
        SELECT referral_id, routed_at, operator_id, priority, decision_deadline, routed, escalated, reaction,
               decided_at, decision_on_time
        FROM referral_compliance FINAL
        WHERE routed_at >= now_ms - %(days)s * 43200000
    )
    WHERE routed = 1
      AND (reaction = 1
           OR (escalated = 0 AND referral_id NOT IN
               (WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
                SELECT referral_id FROM referral_compliance
                WHERE routed_at >= now_ms - %(days)s * 86400000 AND escalated = 1 AND reaction = 0))
           OR (escalated = 1 AND referral_id NOT IN
               (SELECT referral_id FROM reactions
                WHERE referral_id IN
                    (WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
                     SELECT referral_id FROM referral_compliance
                     WHERE routed_at >= now_ms - %(days)s * 86400000 AND escalated = 1 AND reaction = 0))))
)
GROUP BY operator_id, priority
ORDER BY operator_id, priority
