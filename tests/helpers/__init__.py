"""Builders shared by the tests: realistic density files and stores, element label tables.

Imported as ``helpers.<module>`` (pytest puts ``tests/`` on the import path); fixtures live in
``tests/conftest.py``. These modules hold no tests.
"""
