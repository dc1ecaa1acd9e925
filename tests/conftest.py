"""Shared test set-up: unit tests need nothing; integration fixtures live in tests/integration."""
