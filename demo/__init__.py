"""The demo bank that ``make run`` serves: its people, organisations, partner and 18 months of
history written through the real services and the real append path (``demo.bank``,
``demo.history``, ``demo.seed``)."""
