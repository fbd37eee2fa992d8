"""What the league owes and did, for people: the one balances query (``balances``), the treasurer's
CSV (``export``), the audit log's CSV (``audit_export``), pickers and filters (``directory``) and the
accent-free name search (``name_search``)."""
