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
    -- referral_reports (migration 0003): the report's fields, the same in every version of a
    -- referral, sorted by reported_at. FINAL reads in a single thread on 18.16: the two halves of
    -- the period, in parallel.
    WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    SELECT reporter_id, label, instrument, label_rejected, duplicate
    FROM referral_reports FINAL
    WHERE reported_at >= now_ms - %(days)s * 86400000 AND reported_at < now_ms - %(days)s * 43200000
    UNION ALL
    WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    SELECT reporter_id, label, instrument, label_rejected, duplicate
    FROM referral_reports FINAL
    WHERE reported_at >= now_ms - %(days)s * 43200000
)
WHERE duplicate = 0
GROUP BY reporter_id
ORDER BY labels_rejected DESC, reporter_id
