"""Constructed histories for the compliance tests: officers, devices and who carried them,
cases, actions and recordings as catalog rows, with exactly the times a test names."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from catalog.models import (
    ActionOfficer,
    Case,
    Device,
    DeviceAssignment,
    Docking,
    EnforcementAction,
    Officer,
    Recording,
    Station,
)

T0 = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # 09:00 China Standard Time
_n = itertools.count(1)


def at(seconds: float) -> datetime:
    """T0 plus this many seconds."""
    return T0 + timedelta(seconds=seconds)


class World:
    """Rows added through one session; ids by officer number, serial and action id."""

    def __init__(self, session: Session, unit: str = "徐汇区市场监督管理局") -> None:
        self.s = session
        self.unit = unit
        self.officers: dict[str, int] = {}
        self.devices: dict[str, int] = {}
        self.cases: dict[str, int] = {}

    def officer(self, number: str, name: str = "", unit: str | None = None) -> int:
        found = self.s.scalar(select(Officer.id).where(Officer.number == number))
        if found is not None:
            self.officers[number] = found
        if number not in self.officers:
            o = Officer(number=number, name=name or f"警员{number}", unit=unit or self.unit)
            self.s.add(o)
            self.s.flush()
            self.officers[number] = o.id
        return self.officers[number]

    def device(self, serial: str, model: str = "DSJ-V9", unit: str | None = None) -> int:
        found = self.s.scalar(select(Device.id).where(Device.serial == serial))
        if found is not None:
            self.devices[serial] = found
        if serial not in self.devices:
            d = Device(serial=serial, model=model, unit=unit or self.unit, registered=True)
            self.s.add(d)
            self.s.flush()
            self.devices[serial] = d.id
        return self.devices[serial]

    def assign(
        self, serial: str, officer: str, start: datetime, end: datetime | None = None
    ) -> None:
        self.s.add(
            DeviceAssignment(
                device_id=self.device(serial),
                officer_id=self.officer(officer),
                start=start,
                end=end,
            )
        )
        self.s.flush()

    def case(self, number: str = "沪徐市监罚〔2026〕1号", unit: str | None = None) -> int:
        found = self.s.scalar(select(Case.id).where(Case.number == number))
        if found is not None:
            self.cases[number] = found
        if number not in self.cases:
            c = Case(number=number, unit=unit or self.unit, title="测试")
            self.s.add(c)
            self.s.flush()
            self.cases[number] = c.id
        return self.cases[number]

    def action(
        self,
        external_id: str,
        officers: list[str],
        start: datetime,
        end: datetime,
        case: str = "沪徐市监罚〔2026〕1号",
    ) -> int:
        a = EnforcementAction(
            case_id=self.case(case), external_id=external_id, start=start, end=end
        )
        self.s.add(a)
        self.s.flush()
        for number in officers:
            self.s.add(ActionOfficer(action_id=a.id, officer_id=self.officer(number)))
        self.s.flush()
        return a.id

    def recording(
        self,
        serial: str,
        start: datetime,
        end: datetime | None,
        *,
        time_flags: list[str] | None = None,
        officer: str | None = None,
        received: datetime | None = None,
        size: int = 1000,
    ) -> int:
        n = next(_n)
        sha = hashlib.sha256(f"rec {n} {start}".encode()).hexdigest()
        flags: dict[str, Any] = {"time": time_flags} if time_flags else {}
        r = Recording(
            sha256=sha,
            sm3=sha,
            size=size,
            object_key=f"sha256/{sha}",
            state="PROBED" if end is not None else "STORED",
            original_name=f"{serial}_{n}.MP4",
            device_id=self.device(serial),
            officer_id=self.officer(officer) if officer else self._holder(serial, start),
            captured_at=start,
            capture_end=end,
            received_at=received or (end or start) + timedelta(hours=2),
            flags=flags,
        )
        self.s.add(r)
        self.s.flush()
        return r.id

    def _holder(self, serial: str, at: datetime) -> int | None:
        """The officer the catalog resolves for a recording: the assignment at capture."""
        found: int | None = self.s.scalar(
            select(DeviceAssignment.officer_id).where(
                DeviceAssignment.device_id == self.device(serial),
                DeviceAssignment.start <= at,
                or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > at),
            )
        )
        return found

    def docking(
        self,
        serial: str,
        when: datetime,
        *,
        clock_offset_s: float | None = None,
        bytes_total: int = 0,
    ) -> int:
        if self.s.get(Station, "station-t") is None:
            self.s.add(Station(id="station-t", unit=self.unit))
            self.s.flush()
        raw = {} if clock_offset_s is None else {"clock_offset_s": clock_offset_s}
        d = Docking(
            uid=f"dock-{next(_n)}",
            station_id="station-t",
            device_id=self.device(serial),
            slot="1",
            source_path="/dock/1",
            state="CLEARED",
            identity_raw=raw,
            started_at=when,
            finished_at=when + timedelta(minutes=5),
            bytes_total=bytes_total,
        )
        self.s.add(d)
        self.s.flush()
        return d.id
