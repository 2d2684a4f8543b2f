-- An Idempotency-Key's replay must repeat the whole request, not only the file:
-- request_digest is sha256 over the descriptive parts (name, mime, description,
-- metadata, derived_from). Keys recorded before it existed compare sha256 and name.
ALTER TABLE idempotency_keys ADD COLUMN request_digest text;
