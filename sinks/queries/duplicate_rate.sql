-- title: Duplicate rate per reporter
-- description: Per reporter, over referrals reported in the last `days`: referrals kept (routed or
--   unroutable), duplicates of an item already routed, and duplicate_rate = duplicates / all.
-- param days = 30: days of reports to look back from now_ms
-- param now_ms = 0: the clock, ms since the epoch (0: the server's now())
SELECT
    reporter_id,
    countIf(duplicate = 0) AS referrals,
    countIf(duplicate = 1) AS duplicates,
    round(duplicates / (referrals + duplicates), 4) AS duplicate_rate
FROM
(
    -- referral_reports (migration 0003): referrals (duplicate = 0) and duplicates (1) by
    -- reported_at, the same in every version. FINAL reads in a single thread on 18.16: the two
    -- halves of the period, in parallel.
    WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    SELECT reporter_id, duplicate
    FROM referral_reports FINAL
    WHERE reported_at >= now_ms - %(days)s * 86400000 AND reported_at < now_ms - %(days)s * 43200000
    UNION ALL
    WITH if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s)) AS now_ms
    SELECT reporter_id, duplicate
    FROM referral_reports FINAL
    WHERE reported_at >= now_ms - %(days)s * 43200000
)
GROUP BY reporter_id
ORDER BY duplicate_rate DESC, reporter_id
