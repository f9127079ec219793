import pytest

from support.ops import make_inputs as _make_inputs


@pytest.fixture
def make_inputs():
    return _make_inputs
