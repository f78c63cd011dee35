"""A local, Graph-compatible server for exactly the calls the Graph adapters make (docs/local-stack.md).

``server`` is the entry point (``LocalGraph``); each other module holds one of its jobs.
"""
