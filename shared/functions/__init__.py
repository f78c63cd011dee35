"""The trigger functions: one blueprint per trigger, each a thin wrapper over shared.service."""
