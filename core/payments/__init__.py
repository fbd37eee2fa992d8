"""The payment provider: the port (``gateway``), its one adapter (``stripe_gateway``, the only module
that imports the Stripe SDK), the bounded pool for concurrent calls (``provider_calls``), payment sync
(``sync``) and the pure rules that read a link's checkouts (``reconciliation``)."""
