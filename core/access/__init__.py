"""Who may act, and in which league: permissions (``permissions``), the roles configured per league
(``roles``), the sign-in configuration (``sign_in``), the demo-mode guard, finding the league
(``leagues``) and the league's own name and brand (``league_settings``)."""
