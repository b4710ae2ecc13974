"""Every version of every scenario ever run, so that enrolled leads finish on theirs."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import insert, select, update

from nurture.store.base import Part, insert_ignore
from nurture.store.tables import AUDIT_LOG, ENROLMENTS, SCENARIO_VERSIONS
from nurture.vocabulary import EnrolmentStatus


class Versions(Part):
    def register(self, scenario_id: str, version: str, path: str, source: str, migrate: Mapping[str, str]) -> int:
        """Record the current version of a scenario; move leads per its migration map.

        Returns how many enrolments were migrated.
        """
        now = self.clock.now()
        moved = 0
        with self.engine.begin() as conn:
            conn.execute(
                update(SCENARIO_VERSIONS).where(SCENARIO_VERSIONS.c.scenario_id == scenario_id).values(is_current=False)
            )
            # Several daemons may start with the same new version at once: the first one
            # records it, the others find it there.
            conn.execute(
                insert_ignore(self.postgres, SCENARIO_VERSIONS).values(
                    scenario_id=scenario_id,
                    version=version,
                    path=path,
                    source=source,
                    loaded_at=now,
                    is_current=True,
                )
            )
            conn.execute(
                update(SCENARIO_VERSIONS)
                .where(SCENARIO_VERSIONS.c.scenario_id == scenario_id, SCENARIO_VERSIONS.c.version == version)
                .values(is_current=True)
            )
            for old_state, new_state in migrate.items():
                result = conn.execute(
                    update(ENROLMENTS)
                    .where(
                        ENROLMENTS.c.scenario_id == scenario_id,
                        ENROLMENTS.c.scenario_version != version,
                        ENROLMENTS.c.status == EnrolmentStatus.ACTIVE,
                        ENROLMENTS.c.state == old_state,
                    )
                    .values(
                        scenario_version=version, state=new_state, entered_at=now, due_at=now, seq=ENROLMENTS.c.seq + 1
                    )
                )
                moved += result.rowcount
            if moved:
                conn.execute(
                    insert(AUDIT_LOG).values(
                        at=now,
                        kind="migrated",
                        detail={"scenario": scenario_id, "version": version, "enrollments": moved},
                    )
                )
        return moved

    def source(self, scenario_id: str, version: str) -> tuple[str, str] | None:
        with self.store.reading() as conn:
            row = conn.execute(
                select(SCENARIO_VERSIONS.c.path, SCENARIO_VERSIONS.c.source).where(
                    SCENARIO_VERSIONS.c.scenario_id == scenario_id, SCENARIO_VERSIONS.c.version == version
                )
            ).first()
        return (row.path, row.source) if row else None
