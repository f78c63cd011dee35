"""A deterministic day of WhatsApp traffic, as TeleMessage would archive it (docs/local-stack.md).

``day`` is the entry point (``generate_day``, ``TrafficDay``); each other module holds one of its jobs.
"""
