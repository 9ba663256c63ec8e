"""The rules shared across ARCHITECTURE.md's package walls are defined once."""

from __future__ import annotations

from datetime import timedelta


def test_china_standard_time_is_defined_once() -> None:
    # Recorder clocks and a unit's calendar days are UTC+8: one definition, in config,
    # that every package may import.
    import catalog.case_import
    import compliance.periods
    import config.settings
    import ingest.identity
    import ingest.synthetic

    cst = config.settings.CHINA_STANDARD_TIME
    assert cst.utcoffset(None) == timedelta(hours=8)
    assert catalog.case_import.CHINA_STANDARD_TIME is cst
    assert compliance.periods.CST is cst
    assert ingest.identity.CHINA_STANDARD_TIME is cst
    assert ingest.synthetic.CHINA_STANDARD_TIME is cst
