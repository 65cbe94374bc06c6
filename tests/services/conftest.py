"""Fixtures of the service tests: the lifecycle tests' shop (two stores of two members, two customers each)
and an admin who switches rules on."""

import pytest

from tests.conftest import customers_of, make_user
from tests.services.lifecycle_helpers import MEMBERS


@pytest.fixture
def shop(app, sim, corp, run_worker):
    """Two stores of two members (the first of each is its manager), two customers per member."""
    return customers_of(app, sim, run_worker, MEMBERS)


@pytest.fixture
def admin(app):
    user_id, _ = make_user(app, "boss", "admin")
    return user_id
