"""People and permissions (issue 15): roles and the policy, accounts, sessions, and the
access audit. May import config, catalog and storage; not ingest, liuhen, api or web."""
