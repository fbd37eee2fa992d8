"""Roster import: ``importing.import_roster`` and the pieces behind it.

- ``formats``: the three kinds of CSV file and how a header row is recognised;
- ``reading``: streaming a file row by row (UTF-8, BOM, CRLF, line numbers);
- ``validation``: turning rows into typed records, with errors naming line and column;
- ``planning``: comparing records with the league's data (created / updated / unchanged)
  and applying the changes in batches;
- ``result``: the counts and the problems an import reports.
"""
