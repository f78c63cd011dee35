"""A small stand-in for the Azure Functions host: drives a FunctionApp's registered functions locally
over Azurite (docs/local-stack.md says what it emulates and what not).

``runner`` is the entry point (``HostRunner``); each other module holds one of its jobs.
"""
