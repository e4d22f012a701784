"""Importing production conversations as regression scenarios (``runner scenarios import``).

``redact`` masks personal data (pure), ``build`` turns a conversation into a scenario and
merges scenario files (pure), ``fetch`` reads the vendor's conversation-history API (retries,
bounded concurrency, cache), ``command`` is the CLI's thin shell over them.
"""
