-- artifact_type: an optional label (report, plan, dataset, log …), a slug; NULL when
-- absent. The listing filters on it like on the other lineage-free fields.
ALTER TABLE artifacts ADD COLUMN artifact_type text
    CHECK (artifact_type ~ '^[a-z0-9][a-z0-9._-]{0,63}$');
CREATE INDEX artifacts_type ON artifacts (project_id, artifact_type, seq DESC)
    WHERE artifact_type IS NOT NULL;
-- Every artifact written before had none: so say the events that carry one.
UPDATE events SET payload = payload || '{"artifact_type": null}'::jsonb
WHERE NOT payload ? 'artifact_type' AND payload ? 'state';
