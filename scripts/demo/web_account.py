"""The demo's web account: a reviewer and archivist of the demo case's unit, with a
password made now and printed once (the demo's data directory only; a real install has
no such account: its first administrator comes from `liuhen init --admin`)."""

from __future__ import annotations

import sys

from access.accounts import create_user, generate_password
from access.roles import Role
from catalog.db import Catalog
from config import load_settings

UNIT = "徐汇区市场监督管理局"  # the unit of scripts/demo/cases.csv


def main() -> int:
    settings = load_settings(None, None)
    catalog = Catalog(settings.catalog_url)
    password = generate_password(settings.access)
    with catalog.transaction() as session:
        create_user(
            session,
            login="demo",
            display_name="演示审核员",
            unit=UNIT,
            roles=(Role.REVIEWER, Role.ARCHIVIST),
            actor="scripts/demo.sh",
            policy=settings.access,
            password=password,
        )
    catalog.dispose()
    print(password)
    return 0


if __name__ == "__main__":
    sys.exit(main())
