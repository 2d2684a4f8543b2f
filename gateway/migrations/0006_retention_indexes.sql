-- Retention: the sweep prunes signed-URL audit rows some time after their expiry,
-- oldest first, in bounded batches; this index finds them without a scan.
CREATE INDEX signed_url_mints_expires ON signed_url_mints (expires_at);

-- Ended claims (released or superseded) and expired ones are pruned some time after
-- they ended or expired. An artifact keeps its lineage in its own columns (lease_id,
-- run_id, step_id, job_id, attempt, worker_session_id, session_id), so it no longer
-- references the claim row, which may be gone.
ALTER TABLE artifacts DROP CONSTRAINT IF EXISTS artifacts_lease_id_fkey;
CREATE INDEX job_claims_ended ON job_claims (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX job_claims_expires_active ON job_claims (expires_at) WHERE state = 'active';

-- Idempotency keys live GATEWAY_IDEMPOTENCY_TTL_SECONDS, then are pruned oldest first.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Events are kept GATEWAY_EVENTS_RETENTION_SECONDS, then pruned oldest first. Each
-- project records the highest seq pruned: a consumer asking for events after a
-- lower seq is told they are gone (410 events_expired), never given a gap.
ALTER TABLE projects ADD COLUMN events_pruned_seq bigint NOT NULL DEFAULT 0;
CREATE INDEX events_created ON events (created_at);
