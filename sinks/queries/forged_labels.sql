-- title: Forged labels per reporter
-- description: Per reporter, over referrals reported in the last `days`: referrals, label claims
--   (label = LABELLED), removal orders, and labels_rejected (label_rejected: a label or removal order claimed
--   without entitlement, downgraded by the pipeline) with its share of the referrals.
-- param days = 30: days of reports to look back from now_ms
-- param now_ms = 0: the clock, ms since the epoch (0: the server's now())
SELECT
    reporter_id,
    count() AS referrals,
    countIf(label = 'LABELLED') AS label_claims,
    countIf(instrument = 'REMOVAL_ORDER') AS removal_orders,
    countIf(label_rejected = 1) AS labels_rejected,
    round(labels_rejected / referrals, 4) AS rejected_share
FROM
(
    -- referral_reports: the referrals' report fields sorted by reported_at (the same in every version)
    SELECT reporter_id, label, instrument, label_rejected, duplicate
    FROM referral_reports FINAL
    WHERE reported_at >= if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s))
                         - %(days)s * 86400000
)
WHERE duplicate = 0
GROUP BY reporter_id
ORDER BY labels_rejected DESC, reporter_id
