import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):      # see tests/conftest.py
    yield
