"""Who may see and change an artifact: the rule, written once.

- A principal outside the project sees nothing in it (every route answers the
  same ``404``); a member needs ``artifacts:read`` to read.
- A **run artifact** (``owner_kind = 'run'``) is seen by every reader of its
  project. A **principal artifact** is seen by its owner (``owner_id`` = the
  principal's ``sub``) and by principals holding ``artifacts:admin``.
- A lease (a worker publishing) sees the run artifacts of its project.
- Deleting needs ``artifacts:admin``, or ``artifacts:delete`` on one's own
  principal artifact; revoking signed URLs needs ``artifacts:admin``.

:class:`Viewer` carries what the rule needs; :meth:`Viewer.can_see` applies it
to a row in Python and :func:`visible_sql` writes the same rule as SQL for the
listing, the events feed and ``derived_from``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.auth import Principal
from gateway.rows import ArtifactRow


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """Whoever looks: a principal's ``sub`` and whether it is an admin, or a lease
    (``sub`` None), which sees run artifacts only."""

    sub: str | None
    is_admin: bool = False

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        return cls(sub=principal.sub, is_admin=principal.has("artifacts:admin"))

    def can_see(self, row: ArtifactRow) -> bool:
        return self.sees(row.owner_kind, row.owner_id)

    def sees(self, owner_kind: str, owner_id: str) -> bool:
        """The rule, for an artifact of this owner."""
        return (
            owner_kind == "run" or self.is_admin or (self.sub is not None and owner_id == self.sub)
        )


def visible_sql(sub: str, is_admin: str, *, table: str = "") -> str:
    """:meth:`Viewer.can_see` as a SQL condition over two parameters.

    ``sub`` and ``is_admin`` are the placeholders (``$3::text``, ``$4::boolean``)
    holding :attr:`Viewer.sub` and :attr:`Viewer.is_admin`; ``table`` qualifies
    the columns (``"a."``).
    """
    return f"({table}owner_kind = 'run' OR {is_admin} OR {table}owner_id = {sub})"


def can_delete(principal: Principal, row: ArtifactRow) -> bool:
    """``artifacts:admin``, or ``artifacts:delete`` on one's own principal artifact."""
    owns = row.owner_kind != "run" and row.owner_id == principal.sub
    return principal.has("artifacts:admin") or (owns and principal.has("artifacts:delete"))


def can_revoke(principal: Principal) -> bool:
    return principal.has("artifacts:admin")
