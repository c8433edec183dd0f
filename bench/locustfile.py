"""The users of bench/load.py: log in once, then mix the dashboard's pages (locust, headless).

Read by `locust -f bench/locustfile.py`; bench/load.py passes the plan (users, flow
definitions, loop ids) in the file named by BENCH_LOAD_PLAN and the mode in
BENCH_LOAD_MODE: "steady" (each user 2.5 requests/s) or "saturation" (no wait).
Statistics restart after BENCH_LOAD_WARMUP seconds, so logins and cold caches are not
measured. Each request is named by its page kind; a redirect (to the login page) or an
error status counts as a failure.
"""

import json
import os
import random
import re
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, constant_throughput, events, task

PLAN = json.loads(Path(os.environ["BENCH_LOAD_PLAN"]).read_text())
MODE = os.environ.get("BENCH_LOAD_MODE", "steady")
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@events.test_start.add_listener
def restart_statistics_after_warmup(environment, **kwargs):
    warmup = float(os.environ.get("BENCH_LOAD_WARMUP", "0"))
    if warmup > 0 and environment.runner is not None:
        gevent.spawn_later(warmup, environment.runner.stats.reset_all)


class DashboardUser(FastHttpUser):
    wait_time = constant_throughput(2.5) if MODE == "steady" else constant(0)

    def on_start(self):
        username = PLAN["users"][self.environment.runner.user_count % len(PLAN["users"])]
        page = self.client.get("/accounts/login/", name="login")
        token = TOKEN.search(page.text).group(1)
        self.client.post(
            "/accounts/login/", data={"username": username, "password": PLAN["password"], "csrfmiddlewaretoken": token,
                                      "next": "/"}, name="login",
        )

    def page(self, url: str, kind: str) -> None:
        with self.client.get(url, name=kind, allow_redirects=False, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")

    @task(2)
    def overview(self):
        self.page("/", "overview")

    @task(3)
    def list_unfiltered(self):
        self.page("/loops/", "list")

    @task(2)
    def list_filtered(self):
        arn = random.choice(PLAN["flow_definitions"])
        self.page(f"/loops/?flow_definition={arn}&status=Completed&window=7d", "list_fd_status_7d")

    @task(1)
    def list_deep_page(self):
        self.page(f"/loops/?page={random.randint(PLAN['deep_pages'][0], PLAN['deep_pages'][1])}", "list_deep_page")

    @task(2)
    def loop_page(self):
        self.page(f"/loops/{random.choice(PLAN['loop_ids'])}/", "loop_page")


# Every page request's start (epoch seconds), kind and time (ms), written at exit to the
# file named by BENCH_LOAD_REQUEST_LOG: bench/load.py sets them beside the syncs' times.
REQUESTS: list[tuple[float, str, float]] = []


@events.request.add_listener
def remember_request(name, response_time, start_time=None, **kwargs):
    if start_time is not None and name != "login":
        REQUESTS.append((start_time, name, response_time))


@events.quitting.add_listener
def report_own_cpu(environment, **kwargs):
    # bench/load.py reads this line: locust's CPU seconds, taken before the process is gone.
    print(f"BENCH_LOCUST_CPU {time.process_time():.3f}", flush=True)
    if os.environ.get("BENCH_LOAD_REQUEST_LOG"):
        Path(os.environ["BENCH_LOAD_REQUEST_LOG"]).write_text(json.dumps(REQUESTS))
