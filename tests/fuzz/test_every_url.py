"""Every URL pattern of the project and the admin, walked with a corpus of hostile values, as
each role and anonymously: never a 500, never more than 2 s of CPU (nor 10 s in all),
nothing written to A2I Local or the database except by a role allowed to.

The URL patterns come from Django's resolver at run time, so pages added later are covered
without editing this file, unless a new path parameter needs a sample value
(PATH_SAMPLES). The parameters of each page are read from the page itself (its links and
its forms, as a superuser sees them) plus the few every page may be sent (COMMON_PARAMS);
the hostile values are in hostile_values.txt beside this file.

For each URL and role:
- GET with no parameter, then each parameter alone with each hostile value (superuser
  and operator; the other roles get every parameter at once with each value), then every
  parameter repeated;
- the path parameters replaced by hostile values (huge and negative ids, NUL, 64 KB);
- POST to every form target found on the pages: the form as the page fills it in, each
  field with each hostile value, each field missing; and a bare POST to every URL.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.converters import IntConverter, PathConverter, SlugConverter, StringConverter, UUIDConverter
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RoutePattern

from loops.models import HumanAnswer
from loops.services import actions
from loops.views.flow_definitions import DISCOVER_NOW_KEY
from tests.conftest import loops_named, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

CORPUS_FILE = Path(__file__).with_name("hostile_values.txt")
# A request may spend at most TIME_LIMIT seconds of this thread's CPU (the test client runs
# the view in it), and at most HANG_LIMIT of wall time: the suite runs on two pytest-xdist
# workers sharing 2 CPUs with browsers and Celery workers, where a wall-clock limit of 2 s
# failed a 2.3-s request that another worker's test had slowed down.
TIME_LIMIT = 2.0
HANG_LIMIT = 10.0
# The slowest first: under pytest-xdist they then overlap the rest of the suite, not its end.
ROLES = ["superuser", "operator", "auditor", "viewer", "nobody", "anonymous"]
FULL_CORPUS_ROLES = {"operator", "superuser"}


def load_corpus() -> list[tuple[str, str]]:
    values = []
    for line in CORPUS_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, _, value = line.partition(" ")
        repeat = re.fullmatch(r"(.*)\*(\d+)", value)
        if repeat:
            value = repeat.group(1) * int(repeat.group(2))
        values.append((label, value))
    return values


CORPUS = load_corpus()

# Parameters any page may be sent: the list's contract, the admin's own, redirects.
COMMON_PARAMS = ["page", "sort", "_export", "q", "o", "p", "e", "all", "next", "_to_field", "_popup", "_changelist_filters"]

# --- path parameters ---------------------------------------------------------------
#
# Valid samples, by parameter name (a function of the fuzz world), then by converter.
# A new page whose path parameter has a new name and an unusual converter: add a line.
# An admin `object_id` is the newest row of that admin's model (the fixtures create a
# throwaway user and group last, so deleting one harms nothing).


@dataclass
class FuzzWorld:
    loop: object
    flow_definition: object
    batch: object
    victim: User
    worker_id: str
    users: dict[str, User | None] = field(default_factory=dict)


PATH_SAMPLES: dict[str, Callable[[FuzzWorld], list[str]]] = {
    "pk": lambda w: [str(w.loop.pk), str(w.flow_definition.pk)],
    "batch_id": lambda w: [str(w.batch.pk)],
    "id": lambda w: [str(w.victim.pk)],
    "app_label": lambda w: ["loops", "auth", "axes"],
    "content_type_id": lambda w: ["1"],
    "uidb64": lambda w: ["MQ"],
    "token": lambda w: ["set-password"],
    "url": lambda w: ["no-such-page/"],
    "worker_id": lambda w: [w.worker_id],
    "name": lambda w: [w.flow_definition.name],
    "extension": lambda w: ["svg", "json"],
}
CONVERTER_SAMPLES = {
    IntConverter: ["1"], StringConverter: ["x"], PathConverter: ["x"], SlugConverter: ["x"], UUIDConverter: [str(uuid.UUID(int=1))],
}
HOSTILE_PATH_VALUES = {
    IntConverter: ["0", "9223372036854775808", "99999999999999999999999"],
    StringConverter: ["%00", "%FF%FE", "A" * 4096],
    PathConverter: ["%00", "%FF%FE", "A" * 4096, "99999999999999999999999"],
    SlugConverter: ["-" * 300],
    UUIDConverter: ["ffffffff-ffff-ffff-ffff-ffffffffffff"],
}

# Tables any request may write: sessions, login throttling records, last_login.
ALWAYS_WRITABLE = {"django_session", "axes_accessattempt", "axes_accesslog", "axes_accessfailurelog", "auth_user"}
# URL name -> the roles that may write other tables through it.
WRITERS = {
    "actions:execute": {"operator", "superuser"},
    # Refresh from A2I stores what DescribeHumanLoop says about the loop.
    "loops:loop_refresh": {"viewer", "auditor", "operator", "superuser"},
    # The admin's stop/delete actions; the rest of the admin for the superuser only.
    "admin:loops_humanloop_changelist": {"operator", "superuser"},
    # Alert rules and channels: the manage_alerts permission (operators).
    **{f"loops:{name}": {"operator", "superuser"} for name in (
        "alerts_evaluate", "alert_rule_create", "alert_rule_edit", "alert_rule_mute", "alert_rule_delete",
        "alert_channel_create", "alert_channel_delete", "alert_channel_test",
    )},
    # Every viewer manages their own read-only API tokens.
    "loops:tokens": {"viewer", "auditor", "operator", "superuser"},
    "loops:token_revoke": {"viewer", "auditor", "operator", "superuser"},
}
# URL name -> a status of 500 or more that is the page's contract, not a failure.
EXPECTED_STATUS = {
    # A load balancer reads "unhealthy" from the status; the fuzz world has no worker.
    "monitoring:health": {503},
}
ADMIN_WRITERS = {"superuser"}
# Roles that may change A2I (the stop and delete actions).
A2I_WRITERS = {"operator", "superuser"}
# After these, the session is gone: log in again.
LOGS_OUT = {"logout", "admin:logout", "password_change", "admin:password_change"}


def _view_name(path: str) -> str:
    try:
        return resolve(urlsplit(path).path).view_name
    except Resolver404:
        return ""


@dataclass(frozen=True)
class Route:
    template: str  # "loops/<int:pk>/" or a regex-derived template with {name} slots
    name: str | None
    params: dict[str, type]  # path parameter -> converter class (None for regex groups)
    callback: object


def walk(patterns, prefix="", namespace=None) -> list[Route]:
    routes = []
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = ":".join(filter(None, [namespace, p.namespace]))
            routes += walk(p.url_patterns, prefix + _template(p.pattern), ns or None)
        elif isinstance(p, URLPattern):
            converters = p.pattern.converters if isinstance(p.pattern, RoutePattern) else {}
            params = {name: type(conv) for name, conv in converters.items()}
            regex_groups = re.findall(r"\(\?P<(\w+)>", str(p.pattern)) if not converters else []
            params.update({name: None for name in regex_groups})
            name = f"{namespace}:{p.name}" if namespace and p.name else p.name
            routes.append(Route(prefix + _template(p.pattern), name, params, p.callback))
    return routes


def _template(pattern) -> str:
    text = str(pattern)
    if isinstance(pattern, RoutePattern):  # <conv:name> -> {name}
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)
    text = text.lstrip("^").rstrip("$")
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text).replace("\\", "")


def every_route() -> list[Route]:
    return walk(get_resolver().url_patterns)


def samples_for(route: Route, world: FuzzWorld) -> dict[str, list[str]]:
    model_admin = getattr(route.callback, "model_admin", None)
    samples = {}
    for name, converter in route.params.items():
        if name == "object_id" and model_admin is not None:
            newest = model_admin.model._default_manager.order_by("-pk").values_list("pk", flat=True).first()
            samples[name] = [str(newest)] if newest is not None else ["1"]
        elif name in PATH_SAMPLES:
            samples[name] = PATH_SAMPLES[name](world)
        elif converter in CONVERTER_SAMPLES:
            samples[name] = CONVERTER_SAMPLES[converter]
        else:
            raise AssertionError(
                f"No sample value for the path parameter {name!r} of {route.template!r} ({route.name}): "
                "add one to PATH_SAMPLES in tests/fuzz/test_every_url.py"
            )
    return samples


def fill(route: Route, values: dict[str, str]) -> str:
    return "/" + route.template.format(**values)


def concrete_paths(route: Route, world: FuzzWorld) -> list[str]:
    """One valid path per sample (checked to resolve to this route), for a parameterless route its path."""
    samples = samples_for(route, world)
    if not samples:
        return [fill(route, {})]
    paths = []
    count = max(len(v) for v in samples.values())
    for i in range(count):
        path = fill(route, {name: values[min(i, len(values) - 1)] for name, values in samples.items()})
        try:
            match = resolve(path)
        except Resolver404:
            raise AssertionError(f"the sample path {path!r} does not resolve: fix PATH_SAMPLES for {route.template!r}") from None
        assert match.func == route.callback or route.name is None, (path, route)
        paths.append(path)
    return paths


def hostile_paths(route: Route, world: FuzzWorld) -> list[str]:
    samples = samples_for(route, world)
    paths = []
    for name, converter in route.params.items():
        for value in HOSTILE_PATH_VALUES.get(converter, ["%00", "A" * 4096, "99999999999999999999999"]):
            values = {n: v[0] for n, v in samples.items()}
            values[name] = value
            paths.append(fill(route, values))
    return paths


# --- what a page accepts: its links and forms ---------------------------------------


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.query_params: set[str] = set()
        self.forms: list[dict] = []
        self._form = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href") and "?" in a["href"]:
            self.query_params.update(k for k, _ in parse_qsl(urlsplit(a["href"]).query, keep_blank_values=True))
        elif tag == "form":
            self._form = {"method": (a.get("method") or "get").lower(), "action": a.get("action"), "fields": []}
            self.forms.append(self._form)
        elif tag in ("input", "select", "textarea", "button") and a.get("name") and self._form is not None:
            kind = (a.get("type") or "").lower()
            if kind in ("checkbox", "radio") and "checked" not in a:
                value = None
            elif tag == "textarea":
                value = "filled in by the fuzz test"  # its text is not an attribute; a required reason, say
            else:
                value = a.get("value") or ""
            self._form["fields"].append((a["name"], value))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


@dataclass
class Target:
    method: str
    path: str
    fields: list[tuple[str, str | None]]


def read_page(client: Client, path: str) -> tuple[set[str], list[Target]]:
    response = client.get(path)
    content_type = response.get("Content-Type", "")
    if response.streaming or "html" not in content_type:
        return set(), []
    parser = PageParser()
    parser.feed(response.content.decode(errors="replace"))
    params = set(parser.query_params)
    targets = []
    for form in parser.forms:
        action = urlsplit(form["action"] or path).path or path
        if form["method"] == "get":
            params.update(name for name, _ in form["fields"])
        else:
            targets.append(Target("post", action, form["fields"]))
    return params, targets


# --- the requests, with the checks --------------------------------------------------


@dataclass
class Problem:
    role: str
    method: str
    url: str
    what: str

    def __str__(self):
        return f"{self.role:9} {self.method} {self.url[:160]}: {self.what}"


class WriteRecorder:
    """Records the tables written by INSERT, UPDATE and DELETE statements on the connection."""

    pattern = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)

    def __init__(self):
        self.tables: set[str] = set()

    def __call__(self, execute, sql, params, many, context):
        match = self.pattern.match(sql)
        if match:
            self.tables.add(match.group(1))
        return execute(sql, params, many, context)


class Fuzzer:
    def __init__(self, role: str, user: User | None):
        self.role, self.user = role, user
        self.client = Client(raise_request_exception=False)
        self.problems: list[Problem] = []
        self.requests = 0
        self.written: set[str] = set()  # every table written, allowed or not
        self._login()

    def _login(self):
        if self.user is not None:
            self.client.force_login(self.user)

    def _may_write(self, path: str) -> bool:
        try:
            match = resolve(urlsplit(path).path)
        except Resolver404:
            return False
        name = match.view_name
        if name in WRITERS:
            return self.role in WRITERS[name]
        return name.startswith("admin:") and self.role in ADMIN_WRITERS

    def request(self, method: str, path: str, body: str | None = None) -> bool:
        """Send one request and check it; returns whether it reached the view's logic (not refused)."""
        recorder = WriteRecorder()
        started, cpu_started = time.monotonic(), time.thread_time()
        with connection.execute_wrapper(recorder):
            if method == "get":
                response = self.client.get(path)
            else:
                response = self.client.post(path, data=body or "", content_type="application/x-www-form-urlencoded")
            if response.streaming:
                b"".join(response.streaming_content)
        elapsed, cpu = time.monotonic() - started, time.thread_time() - cpu_started
        self.requests += 1
        url = path if body is None else f"{path} <- {body[:120]}"
        if response.status_code >= 500 and response.status_code not in EXPECTED_STATUS.get(_view_name(path), ()):
            self.problems.append(Problem(self.role, method.upper(), url, f"status {response.status_code}"))
        if cpu > TIME_LIMIT or elapsed > HANG_LIMIT:
            self.problems.append(Problem(self.role, method.upper(), url, f"took {elapsed:.2f} s ({cpu:.2f} s of CPU)"))
        self.written |= recorder.tables
        written = recorder.tables - ALWAYS_WRITABLE
        if written and not self._may_write(path):
            self.problems.append(Problem(self.role, method.upper(), url, f"wrote {sorted(written)}"))
        try:
            view_name = resolve(urlsplit(path).path).view_name
        except Resolver404:
            view_name = ""
        if method == "post" and view_name in LOGS_OUT:
            self._login()
        refused = response.status_code in (401, 403, 404, 405) or (
            response.status_code == 302 and "login" in response.get("Location", "")
        )
        return not refused

    def get_with(self, path: str, params: list[tuple[str, str]]) -> bool:
        query = "&".join(f"{quote(name, safe='')}={value}" for name, value in params)
        return self.request("get", f"{path}?{query}" if query else path)

    def post_with(self, path: str, fields: list[tuple[str, str]]) -> bool:
        return self.request("post", path, "&".join(f"{quote(name, safe='')}={value}" for name, value in fields))


def _encoded(value: str | None) -> str:
    return quote(value or "", safe="")


# Pages reached only by a POST: posted as the superuser while surveying, so their forms
# (and what those forms post to) are fuzzed too. URL name -> the fields, from the world.
FOLLOW_UPS: dict[str, Callable[[FuzzWorld], dict]] = {
    "actions:confirm": lambda w: {"action": "stop", "loop": str(w.loop.pk)},
    "admin:loops_humanloop_changelist": lambda w: {"action": "stop_human_loops", "_selected_action": str(w.loop.pk)},
}
# Values sent to a page that refused the role (login, 403, 404, 405): enough to show the
# refusal does not depend on the input.
SHARP = {"empty", "nul", "invalid-utf8", "string-64k", "int-huge", "dates-offset-before-year-1"}
# The role that also gets every parameter and field alone (the others get every parameter
# at once with each value): the one that reaches every view's logic. Alone, with one value
# of each kind (ISOLATED); FUZZ_FULL=1 sends every value of the corpus alone too (about
# four times longer).
ISOLATING_ROLES = {"superuser"}
ISOLATED = SHARP | {"dates-offset-after-year-9999", "int-negative", "int-max-64-plus-one", "float-nan", "html", "formula", "crlf"}
ISOLATION_CORPUS = CORPUS if os.environ.get("FUZZ_FULL") == "1" else [(label, value) for label, value in CORPUS if label in ISOLATED]
# The other roles reach the same views' input handling as the superuser (who gets the whole
# corpus); what their runs add is access and writes, which one value of each kind shows.
# This keeps the suite within its time budget; FUZZ_FULL=1 gives every role the whole corpus.
ROLE_CORPUS = CORPUS if os.environ.get("FUZZ_FULL") == "1" else [(label, value) for label, value in CORPUS if label in ISOLATED]
# Admin pages of other apps (Django's users and groups, django-axes' records): the superuser
# sends them one value of each kind too, not the whole corpus (they are not our code; what
# breaks them breaks with one value of its kind, as the bugs this test found did).
THIRD_PARTY_ADMIN = ("/admin/auth/", "/admin/axes/")


@dataclass
class Survey:
    pages: list[tuple[Route, str, list[str]]]  # route, path, the parameters its links and GET forms use
    targets: list[Target]  # POST forms


def survey(world: FuzzWorld, surveyor: Client) -> Survey:
    pages, targets = [], {}
    for route in every_route():
        for path in concrete_paths(route, world):
            params, forms = read_page(surveyor, path)
            pages.append((route, path, sorted(params)))
            for target in forms:
                targets.setdefault((target.path, tuple(name for name, _ in target.fields)), target)
    for name, fields in FOLLOW_UPS.items():
        response = surveyor.post(reverse(name), fields(world))
        parser = PageParser()
        parser.feed(response.content.decode(errors="replace"))
        for form in parser.forms:
            if form["method"] == "post":
                target = Target("post", urlsplit(form["action"] or reverse(name)).path or reverse(name), form["fields"])
                targets.setdefault((target.path, tuple(n for n, _ in target.fields)), target)
    return Survey(pages, list(targets.values()))


def fuzz_as(fuzzer: Fuzzer, world: FuzzWorld, plan: Survey) -> None:
    for _route, path, params in plan.pages:
        ours = not path.startswith(THIRD_PARTY_ADMIN)
        isolate = fuzzer.role in ISOLATING_ROLES and ours
        corpus = CORPUS if isolate else ROLE_CORPUS
        reached = fuzzer.get_with(path, [])
        every = params + [name for name in COMMON_PARAMS if name not in params]
        for label, value in corpus:
            if reached or label in SHARP:
                fuzzer.get_with(path, [(name, value) for name in every])
        if reached:
            if isolate:
                for name in params:
                    for _label, value in ISOLATION_CORPUS:
                        fuzzer.get_with(path, [(name, value)])
            # Repeated: each parameter twice, a hostile value after a harmless one.
            fuzzer.get_with(path, [pair for name in every for pair in ((name, "1"), (name, CORPUS[3][1]))])
        fuzzer.request("post", path)  # a bare POST: nothing, a form error, or 405
    for route in every_route():
        for path in hostile_paths(route, world):
            fuzzer.get_with(path, [])
            fuzzer.request("post", path)

    for target in plan.targets:
        isolate = fuzzer.role in ISOLATING_ROLES and not target.path.startswith(THIRD_PARTY_ADMIN)
        corpus = CORPUS if isolate else ROLE_CORPUS
        defaults = [(name, _encoded(value)) for name, value in target.fields if value is not None]
        reached = fuzzer.post_with(target.path, defaults)
        names = sorted({name for name, _ in target.fields})
        for label, value in corpus:
            if reached or label in SHARP:
                fuzzer.post_with(target.path, [(name, value) for name in names])
        if not reached:
            continue
        if isolate:
            for name in names:
                for _label, value in ISOLATION_CORPUS:
                    fuzzer.post_with(target.path, [(n, v) for n, v in defaults if n != name] + [(name, value)])
        for name in names:  # each field missing
            fuzzer.post_with(target.path, [(n, v) for n, v in defaults if n != name])


def a2i_state(aws) -> dict[str, str]:
    client = aws.client("sagemaker-a2i-runtime")
    state = {}
    for fd in aws.client("sagemaker").list_flow_definitions()["FlowDefinitionSummaries"]:
        paginator = client.get_paginator("list_human_loops")
        for page in paginator.paginate(FlowDefinitionArn=fd["FlowDefinitionArn"]):
            state.update({s["HumanLoopName"]: s["HumanLoopStatus"] for s in page["HumanLoopSummaries"]})
    return state


@pytest.fixture
def fast_hashing(settings):
    # Login and password-change posts would spend most of the run in PBKDF2; the hash's
    # cost is not what this test is about. Set before any user is created.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fuzz_world(fast_hashing, aws, a2i_world, operator, superuser):
    loops = loops_named(a2i_world["in_progress"] + a2i_world["completed"])
    batch = actions.create_batch(operator, "stop", "fuzz", [loops[0].pk])
    users = {
        "anonymous": None,
        "nobody": User.objects.create_user("nina-nogroup", password="x"),
        "viewer": make_user("vera-viewer", group="viewer"),
        "auditor": make_user("arno-auditor", group="auditor"),
        "operator": operator,
        "superuser": superuser,
    }
    # Created last: the admin's object_id samples are the newest rows.
    victim = User.objects.create_user(f"victim-{uuid.uuid4().hex[:6]}", password="x")
    Group.objects.create(name="throwaway")
    # The discover button stays rate-limited: no task is queued on a broker nobody consumes.
    cache.set(DISCOVER_NOW_KEY, "fuzz", timeout=3600)
    # A reviewer with an answer, for the reviewer pages.
    answer = HumanAnswer.objects.create(
        loop=loops[-1], index=0, flow_definition=a2i_world["fd"], loop_creation_time=loops[-1].creation_time,
        worker_id="fuzz-worker-1", answer_content={"label": "cat"},
    )
    yield FuzzWorld(loop=loops[-1], flow_definition=a2i_world["fd"], batch=batch, victim=victim, users=users,
                    worker_id=answer.worker_id)
    cache.delete(DISCOVER_NOW_KEY)


@pytest.mark.parametrize("role", ROLES)
def test_no_url_answers_500_or_hangs_or_writes_for_a_role_that_may_not(role, fuzz_world, aws, superuser):
    surveyor = Client()
    surveyor.force_login(superuser)
    plan = survey(fuzz_world, surveyor)
    fuzzer = Fuzzer(role, fuzz_world.users[role])
    before = a2i_state(aws)

    started = time.monotonic()
    fuzz_as(fuzzer, fuzz_world, plan)

    problems = list(fuzzer.problems)
    if role not in A2I_WRITERS and a2i_state(aws) != before:
        problems.append(Problem(role, "-", "-", "A2I Local's loops changed"))
    print(f"{role}: {fuzzer.requests} requests in {time.monotonic() - started:.0f} s")
    assert fuzzer.requests > 1000
    if role in A2I_WRITERS:  # the write detection works: the actions did record batches
        assert "loops_loopactionbatch" in fuzzer.written
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(str(p) for p in problems[:60])
