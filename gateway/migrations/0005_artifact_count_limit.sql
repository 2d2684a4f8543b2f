-- limit_artifacts: how many live artifacts a project may hold; NULL: the configured
-- default (GATEWAY_DEFAULT_QUOTA_ARTIFACTS). The publish commit enforces it in the
-- same conditional statement that charges the bytes.
ALTER TABLE projects ADD COLUMN limit_artifacts bigint CHECK (limit_artifacts >= 0);
