"""Local stand-ins for the demo and tests: Azurite launcher, host runner, TeleMessage and Graph servers."""
