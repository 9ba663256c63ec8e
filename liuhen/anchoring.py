"""Where a verifier on this host finds signed chain heads (anchors): the station journal,
the object store and the files an auditor names (exported bags, anchor files).

The commands gather the anchors with :func:`reachable_anchors` and hand them to
:func:`catalog.verify_chain` / :func:`catalog.custody.check_anchors`, the one check
behind `custody verify`, `verify --district` and `doctor`. The code is
``api.custody_check``'s, shared with the audit page (which may not import the command
line); it is re-exported here for the commands.
"""

from __future__ import annotations

from api.custody_check import AnchorFileError, Reached, reachable_anchors

__all__ = ["AnchorFileError", "Reached", "reachable_anchors"]
