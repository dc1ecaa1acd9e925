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
FROM referral_reports FINAL
WHERE reported_at >= if(%(now_ms)s = 0, toInt64(toUnixTimestamp(now())) * 1000, toInt64(%(now_ms)s))
                     - %(days)s * 86400000
GROUP BY reporter_id
ORDER BY duplicate_rate DESC, reporter_id
