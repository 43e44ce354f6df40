"""The process edge: the ``dml`` command line, serving (HTTP and Socket Mode), the scheduler
and logging. It builds the Slack adapter (``bot``), the knowledge base (``knowledge``) and
ingest from the settings read at start-up; nothing there imports this package."""
