-- The DMF outbox triggers decide in their WHEN clause, in C, whether a row
-- concerns them: a rollout start that writes 100k scheduled deployments
-- no longer calls a PL/pgSQL function for each of them.
DROP TRIGGER dmf_outbox_deployment ON deployments;
CREATE TRIGGER dmf_outbox_deployment_insert AFTER INSERT ON deployments FOR EACH ROW
	WHEN (NEW.state IN ('pending', 'cancel_requested') AND NEW.delivery = 'pull')
	EXECUTE FUNCTION dmf_outbox_deployment();
CREATE TRIGGER dmf_outbox_deployment_update AFTER UPDATE OF state ON deployments FOR EACH ROW
	WHEN (NEW.state IN ('pending', 'cancel_requested') AND NEW.delivery = 'pull' AND NEW.state IS DISTINCT FROM OLD.state)
	EXECUTE FUNCTION dmf_outbox_deployment();
DROP TRIGGER dmf_outbox_device ON devices;
CREATE TRIGGER dmf_outbox_device AFTER DELETE ON devices FOR EACH ROW
	WHEN (OLD.dmf_exchange IS NOT NULL)
	EXECUTE FUNCTION dmf_outbox_device();
