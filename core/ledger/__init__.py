"""The family ledger: what each family was billed, what it paid, and what was taken off.

A ledger is the source of truth for what a family owes; a Stripe Payment Link is one way to
pay a charge. The modules:

* ``allocation`` — pure rules: which charges a payment, a credit, a reduction or a refund
  meets (chosen charges first, then oldest due first; credit carried to the next charge);
* ``accounts`` — one family's account as the ledger holds it now, and the SQL that says when
  an entry counts (not reversed, a payment not failed), shared with the balances;
* ``positions`` — that SQL's figures stored per family (what is left of each charge, each
  family's credit), rewritten in the transaction of every write, for the league's balances;
* ``entries`` — recording charges, payments and adjustments, and reversing any entry: every
  write is append-only, in the caller's transaction, and in the audit log;
* ``refunds`` — refunds of a payment, through Stripe or made outside it;
* ``links`` — payment links follow charges: a link whose charge was settled another way (or
  whose open amount changed) is retired with the backfill's crash-safe switch-off; a link that
  becomes active is tied to its charge; a Stripe payment becomes a ledger payment;
* ``statement`` — a family's statement: every entry in date order with a running balance;
* ``amounts`` — money typed by a person, in the league's currency.

Who owes what across the league stays ``core.reporting.balances.outstanding_balances``, built
on ``accounts``' SQL. This package imports nothing from the backfill or from payment sync;
they call into it.
"""
