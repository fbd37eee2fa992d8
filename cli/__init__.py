"""The operator's command line (``python -m core``): one module per command under ``commands``,
the shared set-up in ``context``, and the parser and error handling in ``main``. Each command is a
thin presenter of a ``core`` workflow."""
