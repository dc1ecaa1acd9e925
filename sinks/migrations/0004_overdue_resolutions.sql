-- 0004: overdue_status takes a resolution row only from a reaction that can resolve an alert.
--
-- 0003 wrote one resolution row (resolved = 1) per acknowledged or decided reaction version: over
-- 10 million reactions about 15 million rows for some 4 million alerts, all read by the FINAL
-- of open_overdue. An alert exists only when, at a tick after the deadline, the act was missing
-- or late (agents/logic/overdue.py), and once acknowledged or decided a reaction is settled
-- (agents/logic/reactions.py: apply_reissue never moves a met deadline). So a version can resolve
-- an alert only if it is late (on_time = 0), or if the pipeline handled it after the deadline
-- (updated_at > deadline: the operator acted in time but a tick may have raised the alert first)
-- and it is the version that made the act (for ACK: not a later decision version, whose
-- acknowledgement an earlier version carried). The others resolve nothing and are left out.
--
-- Rows written by 0003's view stay: a resolution row without an alert is never listed. The view
-- is replaced while nothing writes (migrations run before the sink consumes).

DROP TABLE IF EXISTS {db}.overdue_status_reaction_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.overdue_status_reaction_mv TO {db}.overdue_status AS
SELECT referral_id,
       arrayJoin(arrayConcat(
           if(acked_at IS NOT NULL
              AND (ifNull(ack_on_time, 1) = 0
                   OR (toInt64(updated_at) > ack_deadline
                       AND (decided_at IS NULL OR ifNull(decided_at, 0) = ifNull(acked_at, 0)))),
              ['ACK'], emptyArrayString()),
           if(decided_at IS NOT NULL
              AND (ifNull(decision_on_time, 1) = 0 OR toInt64(updated_at) > decision_deadline),
              ['DECISION'], emptyArrayString()))) AS deadline_kind,
       '' AS operator_id, '' AS priority, toInt64(0) AS deadline, toInt64(0) AS detected_at, toUInt8(1) AS resolved
FROM {db}.reactions
WHERE acked_at IS NOT NULL OR decided_at IS NOT NULL;
