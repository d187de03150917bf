"""Hehe's back end: services, API, CLI and the application context."""
