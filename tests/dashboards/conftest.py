"""The dashboard tests' store: real tiny runs (support.dashboard_store), made once per session."""
import pytest
from support.dashboard_store import fill_store


@pytest.fixture(scope="session")
def filled_store(tmp_path_factory):
    return fill_store(tmp_path_factory.mktemp("dash"))
