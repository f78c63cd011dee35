"""Adapters: implementations of shared.ports for Azure, Graph, TeleMessage and local files."""
