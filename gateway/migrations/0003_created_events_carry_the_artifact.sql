-- An event's artifact is the whole artifact, as a read of it answered at that
-- moment. artifact.created events written before carried only the reference,
-- project, owner and lineage: fill in the rest. At creation an artifact was
-- available and not deleted, and its other fields never change.
UPDATE events e
SET payload = e.payload || jsonb_build_object(
    'state', 'available',
    'created_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'deleted_at', NULL,
    'created_by', a.created_by,
    'description', a.description,
    'metadata', a.metadata,
    'derived_from', to_jsonb(a.derived_from))
FROM artifacts a
WHERE a.artifact_id = e.artifact_id
  AND e.type = 'artifact.created'
  AND NOT e.payload ? 'state';
