"""``signed_url_mints``: the audit of every signed URL minted (never the signature)."""

from __future__ import annotations

from datetime import datetime

from gateway.db import Conn


async def record(
    conn: Conn,
    *,
    project: str,
    artifact_id: str,
    principal: str,
    kid: str,
    sig_hash: str,
    epoch: int,
    expires_at: datetime,
) -> None:
    """Record a mint. The same principal minting the same artifact's URL twice within
    one second gets the same URL (same expiry, same signature): recorded once."""
    await conn.execute(
        """
        INSERT INTO signed_url_mints (project_id, artifact_id, principal, kid, sig_hash,
            signing_epoch, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (sig_hash) DO NOTHING
        """,
        project,
        artifact_id,
        principal,
        kid,
        sig_hash,
        epoch,
        expires_at,
    )
