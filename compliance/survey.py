"""Equipment survey (音像记录设备摸底): every recorder of a unit, who carries it, when it was
last docked, how full it was and how far its clock was off then, and how much it records.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from catalog.models import Device, DeviceAssignment, Docking, Officer, Recording
from compliance.summary import clock_offset
from config.settings import CHINA_STANDARD_TIME
from config.timetext import show_time

RECENT_DAYS: Final = 30
# Column keys (JSON) and their Chinese headers (CSV), in order.
COLUMNS: Final = (
    ("unit", "单位"),
    ("serial", "设备编号"),
    ("model", "型号"),
    ("registered", "已登记"),
    ("assigned", "是否配发"),
    ("officer", "使用人警号"),
    ("officer_name", "使用人"),
    ("last_docked", "最后接入时间"),
    ("storage_used_bytes", "最后接入时已用存储(字节)"),
    ("clock_offset_s", "最后接入时钟偏差(秒)"),
    ("recordings_30d", f"近{RECENT_DAYS}天录像数"),
)


def survey(session: Session, unit: str | None, now: datetime) -> list[dict[str, Any]]:
    """One row per device (of the unit, or every unit), by unit then serial."""
    q = select(Device.id, Device.unit, Device.serial, Device.model, Device.registered)
    if unit is not None:
        q = q.where(Device.unit == unit)
    devices = session.execute(q.order_by(Device.unit, Device.serial)).all()
    holders = _holders(session, now)
    docked = _last_dockings(session)
    recent = dict(
        session.execute(
            select(Recording.device_id, func.count())
            .where(
                Recording.captured_at >= now - timedelta(days=RECENT_DAYS),
                Recording.captured_at <= now,
            )
            .group_by(Recording.device_id)
        ).all()
    )
    rows = []
    for device_id, unit_name, serial, model, registered in devices:
        holder = holders.get(device_id)
        when, used, raw = docked.get(device_id, (None, None, None))
        rows.append(
            {
                "unit": unit_name,
                "serial": serial,
                "model": model,
                "registered": registered,
                "assigned": holder is not None,
                "officer": holder[0] if holder else None,
                "officer_name": holder[1] if holder else None,
                "last_docked": when.isoformat() if when else None,
                "storage_used_bytes": used,
                "clock_offset_s": clock_offset(raw),
                "recordings_30d": recent.get(device_id, 0),
            }
        )
    return rows


def _holders(session: Session, now: datetime) -> dict[int, tuple[str, str]]:
    q = (
        select(DeviceAssignment.device_id, Officer.number, Officer.name)
        .join(Officer, Officer.id == DeviceAssignment.officer_id)
        .where(
            DeviceAssignment.start <= now,
            or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > now),
        )
    )
    return {device_id: (number, name) for device_id, number, name in session.execute(q)}


def _last_dockings(session: Session) -> dict[int, tuple[datetime, int, dict[str, Any]]]:
    last = (
        select(Docking.device_id, func.max(Docking.started_at).label("at"))
        .where(Docking.device_id.is_not(None))
        .group_by(Docking.device_id)
        .subquery()
    )
    q = select(
        Docking.device_id, Docking.started_at, Docking.bytes_total, Docking.identity_raw
    ).join(last, and_(last.c.device_id == Docking.device_id, last.c.at == Docking.started_at))
    return {d: (at, used, raw) for d, at, used, raw in session.execute(q.order_by(Docking.id))}


def to_csv(rows: list[dict[str, Any]], zone: tzinfo = CHINA_STANDARD_TIME) -> bytes:
    """UTF-8 with a byte-order mark and CRLF lines: Excel on Chinese Windows opens it as
    UTF-8 (without the mark it guesses GBK and garbles every Chinese character).

    The headers are Chinese whatever the language: the survey is a form sent up to the
    district in Chinese. Times are in ``zone`` (the station's), with their offset."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([head for _, head in COLUMNS])
    for row in rows:
        writer.writerow(
            [
                show_time(row[key], zone) if key == "last_docked" and row[key] else _cell(row[key])
                for key, _head in COLUMNS
            ]
        )
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)
