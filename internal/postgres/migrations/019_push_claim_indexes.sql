-- A push claim takes the open push deployments nobody holds, in id order,
-- and those whose holder's lease ran out: each from a small index of its
-- own, instead of every open push deployment read and sorted per claim.
DROP INDEX deployments_push;
CREATE INDEX deployments_push_unclaimed ON deployments (id)
	WHERE delivery = 'push' AND push_owner IS NULL AND state IN ('pending', 'downloading', 'downloaded', 'installing', 'cancel_requested');
CREATE INDEX deployments_push_claimed ON deployments (push_until)
	WHERE delivery = 'push' AND push_owner IS NOT NULL AND state IN ('pending', 'downloading', 'downloaded', 'installing', 'cancel_requested');
