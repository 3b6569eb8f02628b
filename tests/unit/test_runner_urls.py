"""The addresses `make run` prints and probes: URLs that work as typed into curl or a browser."""

import pytest

from core.runner import base_url


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8000"),
    ("0.0.0.0", "http://127.0.0.1:8000"),  # bound to every address: answers on loopback
    ("::1", "http://[::1]:8000"),  # http://::1:8000 is no URL: curl and browsers refuse it
])
def test_the_url_of_a_server_bound_to_a_host_is_one_a_browser_can_open(host, url):
    assert base_url(host, 8000) == url
