"""全过程记录 in numbers: coverage of enforcement actions by recordings, the unit's picture,
sampling reviews (案卷评查), the equipment survey (装备摸底) and the self-inspection report.

The catalog holds the facts (actions, officers, device assignments, recordings); this
package only reads them, and writes review events of its own. Commands (and, later, the
web application) call it. See docs/compliance.md for every figure's definition.
"""
