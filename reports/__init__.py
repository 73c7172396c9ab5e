"""Statistics for the people who run and regulate the bank.

Visit coverage of priority elders, half-yearly reports anchored in the log (and recomputable from
it), supervision signals, exports and SVG charts. Depends on ``ledger``, ``accounts`` and
``care`` (DESIGN.md, architecture).
"""
