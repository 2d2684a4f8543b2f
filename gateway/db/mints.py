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


async def prune(conn: Conn, *, expired_before: datetime, limit: int) -> int:
    """Delete at most ``limit`` audit rows whose URL expired before ``expired_before``,
    oldest first (the ``signed_url_mints_expires`` index); how many were deleted."""
    status: str = await conn.execute(
        """
        DELETE FROM signed_url_mints
        WHERE mint_id IN (
            SELECT mint_id FROM signed_url_mints
            WHERE expires_at < $1
            ORDER BY expires_at
            LIMIT $2
        )
        """,
        expired_before,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])
