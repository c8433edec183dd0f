"""The data migration's groups, as migrated (non-transactional tests run before any flush)."""

import pytest
from django.contrib.auth.models import Group, User

pytestmark = pytest.mark.django_db

VIEW = {
    "view_flowdefinition", "view_humanloop", "view_humanloopstatuschange", "view_syncrun",
    "view_workerheartbeat", "view_loopactionbatch", "view_loopaction",
}


def perms(group: Group) -> set[str]:
    return set(group.permissions.filter(content_type__app_label="loops").values_list("codename", flat=True))


def test_migrations_create_a_viewer_group_with_view_permissions_only():
    viewer = Group.objects.get(name="viewer")
    assert perms(viewer) == VIEW
    assert viewer.permissions.count() == len(VIEW)


def test_migrations_create_an_operator_group_that_may_stop_and_delete():
    operator = Group.objects.get(name="operator")
    assert perms(operator) == VIEW | {"stop_humanloop", "delete_humanloop"}
    user = User.objects.create_user("op", password="x")
    user.groups.add(operator)
    user = User.objects.get(pk=user.pk)  # fresh permission cache
    assert user.has_perms(["loops.stop_humanloop", "loops.delete_humanloop", "loops.view_humanloop"])
    assert not user.has_perm("loops.change_humanloop")
