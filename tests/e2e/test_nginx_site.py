"""deploy/nginx-nurture.conf served by a real nginx in front of the real intake API.

The site file is used as shipped, with only what a test machine must change: its ports, its
certificate (self-signed here) and the API's address. nginx answers some requests itself (the
flood guard's 429, bodies over 64 KiB, the dashboard's 404, the HTTPS redirect); everything
else must reach the app and come back as the app sent it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import START_UP_SECONDS, free_port, healthy, wait_for
from tests.e2e.test_api_workers import api_env

NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin")  # /usr/sbin is not on every user's PATH
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(NGINX is None, reason="needs Debian's nginx (apt-get install nginx)"),
    pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl for a test certificate"),
]
ROOT = Path(__file__).resolve().parents[2]
HOST = "nurture.example.org"  # the site file's server_name
WEBHOOK = "/webhook/christmas-signup"
LIVE_CERTIFICATES = f"/etc/letsencrypt/live/{HOST}"


def site_for_test(folder: Path, http_port: int, https_port: int, api_port: int) -> str:
    """The shipped site file, listening on loopback test ports, with a test certificate and API address."""
    site = (ROOT / "deploy" / "nginx-nurture.conf").read_text()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        f"{LIVE_CERTIFICATES}/fullchain.pem": str(folder / "cert.pem"),
        f"{LIVE_CERTIFICATES}/privkey.pem": str(folder / "key.pem"),
        "http://127.0.0.1:8000": f"http://127.0.0.1:{api_port}",
    }
    for shipped, local in replacements.items():
        assert shipped in site, f"the site file no longer has {shipped!r}: update this test's replacements"
        site = site.replace(shipped, local)
    return site


def main_config(folder: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf gives a site, with every file nginx writes kept in `folder`."""
    temp = " ".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\nevents {{}}\n"
            f"http {{\n  access_log {folder / 'access.log'};\n  {temp}\n  include {folder / 'site.conf'};\n}}\n")


class Site:
    def __init__(self, folder: Path, https: str, http: str, api: str):
        self.folder, self.https, self.http, self.api = folder, https, http, api

    def client(self) -> httpx.Client:
        # The certificate is self-signed; the Host header picks the site's server block as a browser would.
        return httpx.Client(base_url=self.https, verify=False, headers={"Host": HOST}, timeout=10)


@pytest.fixture
def site(tmp_path) -> Site:
    folder = tmp_path / "nginx"
    folder.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    http_port, https_port, api_port = free_port(), free_port(), free_port()
    (folder / "site.conf").write_text(site_for_test(folder, http_port, https_port, api_port))
    (folder / "nginx.conf").write_text(main_config(folder))
    checked = subprocess.run([NGINX, "-t", "-p", str(folder), "-c", str(folder / "nginx.conf")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx refuses the site file:\n{checked.stderr}"

    data = tmp_path / "data"
    env = api_env(f"sqlite:///{data / 'nurture.db'}", data)
    env.pop("WEBHOOK_SECRET")  # the website posts without one in this deployment; the secret's checks have tests of their own
    api_log, nginx_log = tmp_path / "api.log", folder / "nginx.out"
    with open(api_log, "w") as out:
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "core.api:app", "--host", "127.0.0.1",
                                "--port", str(api_port)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    with open(nginx_log, "w") as out:
        proxy = subprocess.Popen([NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
                                 stdout=out, stderr=subprocess.STDOUT)
    try:
        api_url = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: healthy(api_url), START_UP_SECONDS, "the intake API", api_log)
        https = f"https://127.0.0.1:{https_port}"
        wait_for(lambda: _answers(https), START_UP_SECONDS, "nginx", folder / "error.log")
        yield Site(folder, https, f"http://127.0.0.1:{http_port}", api_url)
    finally:
        for process in (proxy, api):
            process.terminate()
        for process in (proxy, api):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(https: str) -> bool:
    try:
        httpx.get(f"{https}/health", verify=False, headers={"Host": HOST}, timeout=2)
        return True
    except httpx.TransportError:
        return False


def signup(email: str) -> dict:
    return {"email": email, "first_name": "Ann", "business_name": "Proxy Ltd", "red_systems": 2}


def test_a_signup_posted_through_nginx_reaches_the_app_and_its_answer_comes_back_as_sent(site):
    with site.client() as client:
        answer = client.post(WEBHOOK, json=signup("ann@example.com"))
        health = client.get("/health")
    assert answer.status_code == 202, answer.text
    assert answer.json()["segment"] == "CRITICAL" and answer.json()["email"] == "ann@example.com"
    assert health.status_code == 200 and health.json()["status"] == "healthy"


def test_a_body_over_64KiB_is_refused_by_nginx_in_the_apps_own_format(site):
    body = json.dumps({**signup("big@example.com"), "padding": "x" * 70_000}).encode()
    headers = {"Content-Type": "application/json"}
    with site.client() as client:
        from_nginx = client.post(WEBHOOK, content=body, headers=headers)
    from_app = httpx.post(f"{site.api}{WEBHOOK}", content=body, headers=headers, timeout=10)
    assert (from_nginx.status_code, from_app.status_code) == (413, 413)
    assert "client intended to send too large body" in (site.folder / "error.log").read_text(), "nginx refused it"
    assert from_nginx.headers["content-type"] == "application/json"
    assert from_nginx.json() == from_app.json() == {"status": "error", "message": "body larger than 65536 bytes"}


def test_a_flood_from_one_address_is_refused_by_nginx_in_the_apps_own_format(site):
    # The flood guard lets a burst of 200 through at once and one more every 0.1 s; the app's own limit is
    # off here, so every 429 is nginx's. The posts are not JSON: the app refuses each at once, storing nothing.
    with site.client() as client:
        answers = [client.post(WEBHOOK, content=b"flood", headers={"Content-Type": "application/json"})
                   for _ in range(320)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "nginx never refused"
    assert {a.status_code for a in answers} == {422, 429}
    assert answers[199].status_code == 422, "a burst of 200 goes through"
    assert "limiting requests" in (site.folder / "error.log").read_text()
    first = refused[0]
    assert first.headers["content-type"] == "application/json" and first.headers["retry-after"] == "1"
    assert first.json() == {"status": "error", "message": "too many signups from this client"}


def test_plain_http_redirects_to_https_keeping_a_signup_a_post(site):
    answer = httpx.post(f"{site.http}{WEBHOOK}", json=signup("plain@example.com"), headers={"Host": HOST},
                        timeout=10, follow_redirects=False)
    assert answer.status_code == 308
    assert answer.headers["location"] == f"https://{HOST}{WEBHOOK}"


def test_the_dashboard_and_every_path_not_made_public_are_not_found(site):
    with site.client() as client:
        for path in ("/", "/_stcore/health", "/metrics", "/docs", "/webhook/other"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            # nginx's own page (nginx passes on no Server header of the app's): the app would answer JSON.
            assert answer.headers["content-type"] == "text/html" and "nginx" in answer.text, f"{path} reached the app"


def test_an_unsubscribe_link_reaches_the_app_and_its_token_is_not_logged(site):
    token = "tok3n-that-must-not-be-logged"
    with site.client() as client:
        answer = client.get(f"/unsubscribe/{token}")
        client.get("/health")
    assert answer.status_code == 400 and "This link is not valid" in answer.text, "the app's own page"
    log = (site.folder / "access.log").read_text()
    assert "/health" in log and token not in log
