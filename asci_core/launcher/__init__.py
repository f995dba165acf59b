"""The launcher: researchers' desktop sessions placed on Docker nodes.

Kept import-free on purpose: asci_core.config imports launcher.settings, and
the rest of the package (docker, SQLite) must not load with the configuration.
"""
