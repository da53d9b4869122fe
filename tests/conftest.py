"""Fixtures shared by several test modules (the root conftest.py sets up the environment)."""
import pytest

from dsda.book import make_book


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The book of this checkout, built once per session (about 7 s): (index.html, problems)."""
    return make_book(tmp_path_factory.mktemp("book"))
