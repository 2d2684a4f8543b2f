-- Initial schema: the whole of the v1 HTTP contract.
--
-- projects          quota, usage and the per-project event sequence
-- job_claims        leases registered by schedulers; lineage of run artifacts
-- artifacts         every published artifact, soft-deleted rows kept as tombstones
-- pending_uploads   multipart uploads in progress, so a crashed process leaves a trail
-- object_deletions  objects whose deletion failed, retried by gc
-- idempotency_keys  Idempotency-Key of a publish, per project and credential
-- signed_url_mints  audit of every signed URL minted
-- events            transactional outbox of artifact.created / artifact.deleted

CREATE TABLE projects (
    project_id      text PRIMARY KEY,
    limit_bytes     bigint CHECK (limit_bytes >= 0),         -- NULL: the configured default
    used_bytes      bigint NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    artifact_count  bigint NOT NULL DEFAULT 0 CHECK (artifact_count >= 0),
    event_seq       bigint NOT NULL DEFAULT 0,               -- last seq handed out
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE job_claims (
    lease_id            text PRIMARY KEY,
    project_id          text NOT NULL,
    run_id              text NOT NULL,
    step_id             text NOT NULL,
    job_id              text NOT NULL,
    attempt             integer NOT NULL CHECK (attempt >= 1),
    worker_session_id   text NOT NULL,
    session_id          text,
    state               text NOT NULL DEFAULT 'active'
                        CHECK (state IN ('active', 'released', 'superseded')),
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    max_expires_at      timestamptz NOT NULL,                -- the lease token's exp
    ended_at            timestamptz,
    superseded_by       text                                 -- lease_id of the newer attempt
);
-- At most one active claim per job; a newer attempt supersedes the older one.
CREATE UNIQUE INDEX job_claims_one_active_per_job
    ON job_claims (project_id, run_id, step_id, job_id) WHERE state = 'active';
CREATE INDEX job_claims_by_job
    ON job_claims (project_id, run_id, step_id, job_id, attempt DESC);

CREATE TABLE artifacts (
    artifact_id         text PRIMARY KEY,                    -- art_<ULID>
    project_id          text NOT NULL,
    seq                 bigint NOT NULL,                     -- event seq of its creation: commit order
    name                text NOT NULL,
    mime                text NOT NULL,
    mime_class          text NOT NULL CHECK (mime_class IN ('image', 'html', 'code', 'text', 'other')),
    size                bigint NOT NULL CHECK (size >= 0),
    sha256              text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    sniffed_mime        text,                                -- what the first bytes look like
    content_agrees      boolean NOT NULL,                    -- the bytes agree with mime
    state               text NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'deleted')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    deleted_by          text,
    owner_kind          text NOT NULL CHECK (owner_kind IN ('run', 'user', 'agent', 'service')),
    owner_id            text NOT NULL,
    created_by          text NOT NULL,
    lease_id            text REFERENCES job_claims (lease_id),
    run_id              text,
    step_id             text,
    job_id              text,
    attempt             integer,
    worker_session_id   text,
    session_id          text,
    description         text,
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    derived_from        text[] NOT NULL DEFAULT '{}',
    object_key          text NOT NULL UNIQUE,
    storage_backend     text NOT NULL,
    signing_epoch       integer NOT NULL DEFAULT 0,
    CHECK ((state = 'deleted') = (deleted_at IS NOT NULL)),
    CHECK ((owner_kind = 'run') = (lease_id IS NOT NULL))
);
-- Listing is newest first by seq (commit order), so keyset pages never skip or repeat.
CREATE UNIQUE INDEX artifacts_project_seq ON artifacts (project_id, seq DESC);
CREATE INDEX artifacts_run ON artifacts (project_id, run_id, seq DESC) WHERE run_id IS NOT NULL;
CREATE INDEX artifacts_job ON artifacts (project_id, job_id, seq DESC) WHERE job_id IS NOT NULL;
CREATE INDEX artifacts_step ON artifacts (project_id, step_id, seq DESC) WHERE step_id IS NOT NULL;
CREATE INDEX artifacts_session ON artifacts (project_id, session_id, seq DESC)
    WHERE session_id IS NOT NULL;
CREATE INDEX artifacts_owner ON artifacts (project_id, owner_kind, owner_id, seq DESC);
CREATE INDEX artifacts_mime_class ON artifacts (project_id, mime_class, seq DESC);
CREATE INDEX artifacts_name_prefix ON artifacts (project_id, name text_pattern_ops);

CREATE TABLE pending_uploads (
    object_key      text PRIMARY KEY,
    project_id      text NOT NULL,
    artifact_id     text NOT NULL,
    upload_id       text,                                    -- S3 multipart upload id
    started_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pending_uploads_started ON pending_uploads (started_at);

CREATE TABLE object_deletions (
    object_key      text PRIMARY KEY,
    project_id      text NOT NULL,
    artifact_id     text,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text
);

CREATE TABLE idempotency_keys (
    project_id      text NOT NULL,
    credential      text NOT NULL,                           -- lease:<id> or principal:<sub>
    idempotency_key text NOT NULL,
    artifact_id     text NOT NULL REFERENCES artifacts (artifact_id),
    sha256          text NOT NULL,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, credential, idempotency_key)
);

CREATE TABLE signed_url_mints (
    mint_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id      text NOT NULL,
    artifact_id     text NOT NULL REFERENCES artifacts (artifact_id),
    principal       text NOT NULL,
    kid             text NOT NULL,
    sig_hash        text NOT NULL UNIQUE,                    -- sha256 of the signature, never the signature
    signing_epoch   integer NOT NULL,
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signed_url_mints_artifact ON signed_url_mints (artifact_id, created_at DESC);

CREATE TABLE events (
    project_id      text NOT NULL,
    seq             bigint NOT NULL,
    type            text NOT NULL CHECK (type IN ('artifact.created', 'artifact.deleted')),
    artifact_id     text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, seq)
);
CREATE INDEX events_type ON events (project_id, type, seq);
