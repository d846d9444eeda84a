"""Shared test fixtures and factories (tests/ is on sys.path; see pytest.ini)."""
