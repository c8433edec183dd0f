"""The shared test world. Feature-specific fixtures live in each tests/<area>/conftest.py."""
