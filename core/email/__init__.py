"""Email: rendering the league's branded emails, the backends that deliver them, and the outbox.

Modules:
- ``brand``: the league's brand, read once per tenant from its row.
- ``headers``: header values that can never carry a line break; recipient validation.
- ``rendering``: Jinja2 templates to a subject, an HTML part and a plain-text part, and the
  ``email.message.EmailMessage`` that is sent.
- ``registry``: the kinds of email (audience + templates + subject).
- ``backends``: where messages go: the port, and one module per backend (``file``, ``smtp``,
  ``gmail`` with its ``pacing``).
- ``skip_reasons``: why a family gets no reminder — the reasons, the one rule, their words.
- ``campaigns`` / ``outbox``: the manifest, test sends, sends to everyone, and the durable outbox.
- ``senders``: whether the run that claimed a message is still alive (advisory lock / process).
- ``presend``: the payment sync that runs before a send to everyone.
- ``sending``: each send workflow (prepare → send, test send, resume, report) sequenced once,
  for the command line and the dashboard to present.
"""
