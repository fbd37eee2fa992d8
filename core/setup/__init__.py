"""Setting a league up: the first run, the setup checklist and which database file is in use."""
