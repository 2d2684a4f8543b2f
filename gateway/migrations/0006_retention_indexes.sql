-- Retention: the sweep prunes signed-URL audit rows some time after their expiry,
-- oldest first, in bounded batches; this index finds them without a scan.
CREATE INDEX signed_url_mints_expires ON signed_url_mints (expires_at);
