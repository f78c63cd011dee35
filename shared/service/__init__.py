"""Service layer: the use cases, written against shared.ports only."""
