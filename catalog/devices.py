"""Device registry: recorders and who carried each one when.

An assignment covers ``[start, end)``; ``end`` is None while it is current. A
recording's officer is the one assigned to its device at its capture start, because a
recorder changes hands between shifts and the name on the file (or the device file)
says only what the recorder was last configured with.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from catalog.custody import append_event
from catalog.errors import CatalogError
from catalog.fields import column_length, fields_problems, shown
from catalog.models import Device, DeviceAssignment, Officer
from catalog.signing import Signer
from config.errors import EXIT_NOINPUT
from config.i18n import _
from config.settings import CHINA_STANDARD_TIME
from config.timetext import iso_time, show_time

# The longest 警号 and serial are the columns' lengths (one place for each number).
OFFICER_NUMBER_MAX = column_length(Officer.number) or 32
SERIAL_MAX = column_length(Device.serial) or 64
OFFICER_NUMBER = re.compile(rf"^[0-9A-Za-z]{{1,{OFFICER_NUMBER_MAX}}}$")
SERIAL = re.compile(rf"^[0-9A-Za-z-]{{1,{SERIAL_MAX}}}$")


class DeviceError(CatalogError):
    """A device or assignment request the registry cannot take."""


class DeviceNotFound(CatalogError):
    exit_code = EXIT_NOINPUT


def check_serial(serial: str) -> str | None:
    if SERIAL.match(serial):
        return None
    return _("device serial {serial!r} is not 1-{most} letters/digits").format(
        serial=shown(serial), most=SERIAL_MAX
    )


def check_officer_number(number: str) -> str | None:
    if OFFICER_NUMBER.match(number):
        return None
    return _("officer number (警号) {number!r} is not 1-{most} letters/digits").format(
        number=shown(number), most=OFFICER_NUMBER_MAX
    )


def device_problems(serial: str, model: str, unit: str) -> list[str]:
    """Every reason a device's fields cannot be stored."""
    problems = [p for p in [check_serial(serial)] if p]
    return problems + fields_problems(
        {_("device model"): (model, Device.model), _("device unit"): (unit, Device.unit)}
    )


def officer_problems(number: str, name: str, unit: str) -> list[str]:
    """Every reason an officer's fields cannot be stored."""
    problems = [p for p in [check_officer_number(number)] if p]
    return problems + fields_problems(
        {_("officer name"): (name, Officer.name), _("officer unit"): (unit, Officer.unit)}
    )


def ensure_officer(session: Session, number: str, name: str = "", unit: str = "") -> Officer:
    """The officer with this 警号, created if new; empty name/unit filled in, never replaced."""
    officer = session.scalars(select(Officer).where(Officer.number == number)).first()
    if officer is None:
        officer = Officer(number=number, name=name, unit=unit)
        session.add(officer)
        session.flush()
    else:
        officer.name = officer.name or name
        officer.unit = officer.unit or unit
    return officer


def add_device(
    session: Session, signer: Signer, *, serial: str, model: str = "", unit: str = "", actor: str
) -> tuple[Device, bool]:
    """Register a recorder (also one first seen at a dock). Returns (device, changed)."""
    if problems := device_problems(serial, model, unit):
        raise DeviceError(
            _("; ").join(problems),
            hint=_("give the serial printed on the recorder, and a model and unit that fit"),
        )
    device = session.scalars(select(Device).where(Device.serial == serial)).first()
    if device is None:
        device = Device(serial=serial, model=model, unit=unit, registered=True)
        session.add(device)
        session.flush()
    elif (
        device.registered
        and (not model or device.model == model)
        and (not unit or device.unit == unit)
    ):
        return device, False
    else:
        device.registered = True
        device.model = model or device.model
        device.unit = unit or device.unit
    append_event(
        session,
        signer,
        actor=actor,
        action="device-registered",
        object_type="device",
        object_id=serial,
        details={"model": device.model, "unit": device.unit},
    )
    return device, True


def assign_device(
    session: Session,
    signer: Signer,
    *,
    serial: str,
    officer_number: str,
    officer_name: str = "",
    officer_unit: str = "",
    start: datetime,
    end: datetime | None = None,
    actor: str,
    note: str = "",
    zone: tzinfo = CHINA_STANDARD_TIME,
) -> tuple[DeviceAssignment, bool]:
    """Give the recorder to an officer from ``start`` (until ``end``, or the next hand-over).

    The assignment current at ``start`` ends there. Returns (assignment, changed); the
    same assignment again changes nothing, so importing an assignment list twice is safe.
    Refusals show times in ``zone`` (the station's).
    """
    _check_assignment(
        serial, officer_number, officer_name, officer_unit, (start, end), actor, note, zone
    )
    device = session.scalars(select(Device).where(Device.serial == serial)).first()
    if device is None:
        raise DeviceNotFound(
            _("no device with serial {serial!r}").format(serial=serial),
            hint=_("register it first: {command}").format(command=f"liuhen device add {serial}"),
        )
    officer = ensure_officer(session, officer_number, officer_name, officer_unit)
    spans = list(
        session.scalars(
            select(DeviceAssignment)
            .where(DeviceAssignment.device_id == device.id)
            .order_by(DeviceAssignment.start)
        )
    )
    same = _same_start(spans, serial, officer.id, start, end, zone)
    if same is not None:
        return same, False
    next_start = _next_start(spans, serial, start, end, zone)
    ended = None
    for a in spans:
        if a.start < start and (a.end is None or a.end > start):
            ended = a
            a.end = start  # the hand-over ends the previous holder's span
    row = DeviceAssignment(
        device_id=device.id,
        officer_id=officer.id,
        start=start,
        end=end if end is not None else next_start,
        actor=actor,
        note=note,
    )
    session.add(row)
    session.flush()
    append_event(
        session,
        signer,
        actor=actor,
        action="device-assigned",
        object_type="device",
        object_id=serial,
        details={
            "officer": officer_number,
            "start": start.isoformat(),
            "end": row.end.isoformat() if row.end else None,
            "note": note,
            "ended": ended.id if ended else None,
        },
    )
    return row, True


def _check_assignment(
    serial: str,
    officer_number: str,
    officer_name: str,
    officer_unit: str,
    span: tuple[datetime, datetime | None],
    actor: str,
    note: str,
    zone: tzinfo,
) -> None:
    """Refuse an assignment whose fields are out of bounds, all problems in one message."""
    start, end = span
    problems = [p for p in [check_serial(serial)] if p]
    problems += officer_problems(officer_number, officer_name, officer_unit)
    problems += fields_problems(
        {_("actor"): (actor, DeviceAssignment.actor), _("note"): (note, DeviceAssignment.note)}
    )
    if end is not None and end <= start:
        problems.append(
            _("end {end} is not after start {start}").format(
                end=show_time(end, zone), start=show_time(start, zone)
            )
        )
    if problems:
        raise DeviceError(_("; ").join(problems), hint=_("correct the assignment and run it again"))


def _same_start(
    spans: list[DeviceAssignment],
    serial: str,
    officer_id: int,
    start: datetime,
    end: datetime | None,
    zone: tzinfo,
) -> DeviceAssignment | None:
    """The identical assignment already recorded (a repeat), or None; a different one at
    the same start is refused: an assignment is history."""
    for a in spans:
        if a.start == start:
            if a.officer_id == officer_id and (end is None or a.end == end):
                return a
            raise DeviceError(
                _(
                    "device {serial} is already assigned from {start} to another officer "
                    "or until another time"
                ).format(serial=serial, start=show_time(start, zone)),
                hint=_("an assignment is history: give the hand-over time of a new one"),
            )
    return None


def _next_start(
    spans: list[DeviceAssignment],
    serial: str,
    start: datetime,
    end: datetime | None,
    zone: tzinfo,
) -> datetime | None:
    """The start of the next later assignment, refusing a new span that would overlap it."""
    later = [a for a in spans if a.start > start]
    next_start = later[0].start if later else None
    if end is not None and next_start is not None and end > next_start:
        raise DeviceError(
            _("device {serial}: {start} – {end} overlaps the assignment from {next}").format(
                serial=serial,
                start=show_time(start, zone),
                end=show_time(end, zone),
                next=show_time(next_start, zone),
            ),
            hint=_("end the new assignment at or before the next hand-over"),
        )
    return next_start


def officer_at(session: Session, device_id: int, at: datetime) -> int | None:
    """The officer assigned to the device at ``at``, if any."""
    return session.scalars(
        select(DeviceAssignment.officer_id)
        .where(
            DeviceAssignment.device_id == device_id,
            DeviceAssignment.start <= at,
            or_(DeviceAssignment.end.is_(None), DeviceAssignment.end > at),
        )
        .order_by(DeviceAssignment.start.desc())
        .limit(1)
    ).first()


def list_devices(session: Session, zone: tzinfo = CHINA_STANDARD_TIME) -> list[dict[str, Any]]:
    """Every device with its assignment history, for `liuhen device list`; times are ISO
    8601 with the offset of ``zone``."""
    officers = {o.id: o for o in session.scalars(select(Officer))}
    history: dict[int, list[dict[str, Any]]] = {}
    for a in session.scalars(select(DeviceAssignment).order_by(DeviceAssignment.start)):
        o = officers[a.officer_id]
        history.setdefault(a.device_id, []).append(
            {
                "officer": o.number,
                "name": o.name,
                "unit": o.unit,
                "start": iso_time(a.start, zone),
                "end": iso_time(a.end, zone),
            }
        )
    return [
        {
            "serial": d.serial,
            "model": d.model,
            "unit": d.unit,
            "registered": d.registered,
            "assignments": history.get(d.id, []),
        }
        for d in session.scalars(select(Device).order_by(Device.serial))
    ]
