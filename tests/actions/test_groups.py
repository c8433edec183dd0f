"""The roles as migrated (non-transactional tests run before any flush): exactly loops.permissions' groups."""

import pytest
from django.contrib.auth.models import Group, User

from loops.permissions import GROUPS

pytestmark = pytest.mark.django_db

READ = {"view_flowdefinition", "view_humanloop", "view_humanloopstatuschange", "view_syncrun", "view_workerheartbeat"}
AUDIT = {"view_loopactionbatch", "view_loopaction", "audit_loopaction"}


def perms(group: Group) -> set[str]:
    return set(group.permissions.values_list("codename", flat=True))


def test_migrations_create_exactly_the_groups_of_the_permissions_module():
    assert set(Group.objects.values_list("name", flat=True)) >= set(GROUPS)
    for name, codenames in GROUPS.items():
        assert perms(Group.objects.get(name=name)) == set(codenames), name


def test_a_viewer_reads_loops_but_not_the_audit_trail():
    assert perms(Group.objects.get(name="viewer")) == READ


def test_an_auditor_reads_the_audit_trail_but_may_not_stop_or_delete():
    assert perms(Group.objects.get(name="auditor")) == READ | AUDIT


def test_an_operator_may_stop_delete_manage_alerts_and_run_a_discovery_now():
    operator = Group.objects.get(name="operator")
    assert perms(operator) == READ | AUDIT | {"stop_humanloop", "delete_humanloop", "manage_alerts", "discover_flowdefinition"}
    user = User.objects.create_user("op", password="x")
    user.groups.add(operator)
    user = User.objects.get(pk=user.pk)  # fresh permission cache
    assert user.has_perms(["loops.stop_humanloop", "loops.delete_humanloop", "loops.view_humanloop", "loops.audit_loopaction",
                           "loops.manage_alerts"])
    assert not user.has_perm("loops.change_humanloop")
