"""Admin for the local copy of A2I and the action audit log.

Everything mirrored from A2I is read-only: nobody edits a loop's status by hand,
and nothing is added or deleted locally. "Delete" on a loop means *delete in A2I*
(the admin actions below, through loops.services.actions), never a local delete.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.defaultfilters import pluralize
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from loops import tasks
from loops.forms import CONFIRM_SAMPLE, ReasonForm
from loops.models import (
    AlertChannel,
    AlertDelivery,
    AlertRule,
    AlertState,
    AlertTransition,
    ApiToken,
    FailureCode,
    FlowDefinition,
    HumanLoop,
    HumanLoopStatusChange,
    LoopAction,
    LoopActionBatch,
    ReceivedEvent,
    SyncRun,
    WorkerHeartbeat,
)
from loops.permissions import MANAGE_ALERTS, user_can_run
from loops.services import actions
from loops.services import audit as audit_service
from loops.tables import PlannedLoopTable


class ReadOnlyMixin:
    """No local add, change or delete: the rows mirror A2I or are an audit trail."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(FlowDefinition)
class FlowDefinitionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "region", "status", "creation_time", "last_sync_succeeded_at", "last_sync_error", "deleted_upstream")
    list_filter = ("status", "region", "deleted_upstream", "creation_time")
    search_fields = ("name", "arn")
    date_hierarchy = "creation_time"


class StatusChangeInline(ReadOnlyInline):
    model = HumanLoopStatusChange
    fields = readonly_fields = ("from_status", "to_status", "observed_at", "source")
    verbose_name_plural = "Status history"


class LoopActionInline(ReadOnlyInline):
    model = LoopAction
    fields = readonly_fields = ("created_at", "user", "action", "reason", "outcome", "detail", "batch")
    ordering = ("-created_at", "-id")
    verbose_name_plural = "Stop and delete attempts"


class FailureCodeFilter(admin.SimpleListFilter):
    # A2I's documented codes; Django's default for a plain CharField would run
    # SELECT DISTINCT over every loop on each changelist page.
    title = "failure code"
    parameter_name = "failure_code"

    def lookups(self, request, model_admin):
        return FailureCode.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(failure_code=self.value())
        return queryset


@admin.register(HumanLoop)
class HumanLoopAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "flow_definition", "status", "creation_time", "failure_code", "deleted_upstream", "last_seen_at")
    list_filter = ("status", "flow_definition", "creation_time", FailureCodeFilter, "deleted_upstream")
    search_fields = ("=name", "=arn")  # exact: a "contains" scan over a million rows is too slow for the admin
    date_hierarchy = "creation_time"
    list_select_related = ("flow_definition",)
    show_full_result_count = False  # no COUNT(*) of every loop on each page
    inlines = (StatusChangeInline, LoopActionInline)
    actions = ("stop_human_loops", "delete_human_loops", "stop_and_delete_human_loops")
    action_confirmation_template = "admin/loops/humanloop/action_confirmation.html"

    # "Permissions" of the actions (Django filters actions by has_<name>_permission).
    def has_a2i_stop_permission(self, request):
        return user_can_run(request.user, LoopActionBatch.Action.STOP)

    def has_a2i_delete_permission(self, request):
        return user_can_run(request.user, LoopActionBatch.Action.DELETE)

    def has_a2i_stop_and_delete_permission(self, request):
        return user_can_run(request.user, LoopActionBatch.Action.STOP_AND_DELETE)

    def get_actions(self, request):
        admin_actions = super().get_actions(request)
        # Would delete local rows only and leave the loops in A2I.
        admin_actions.pop("delete_selected", None)
        return admin_actions

    def changelist_view(self, request, extra_context=None):
        # Django ignores a POSTed action the user is not offered (and shows the list);
        # a forged request for one of ours is refused outright instead.
        name = request.POST.get("action") if request.method == "POST" else None
        if name in ACTION_OF and name not in self.get_actions(request):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)

    @admin.action(permissions=["a2i_stop"], description="Stop selected loops in A2I")
    def stop_human_loops(self, request, queryset):
        return self._run_action(request, queryset, "stop_human_loops")

    @admin.action(permissions=["a2i_delete"], description="Delete selected loops in A2I")
    def delete_human_loops(self, request, queryset):
        return self._run_action(request, queryset, "delete_human_loops")

    @admin.action(permissions=["a2i_stop_and_delete"], description="Stop, then delete selected loops in A2I")
    def stop_and_delete_human_loops(self, request, queryset):
        return self._run_action(request, queryset, "stop_and_delete_human_loops")

    def _run_action(self, request, queryset, name):
        """The confirmation page first (like delete_selected); with post=yes and a reason, run it."""
        action = ACTION_OF[name]
        if not user_can_run(request.user, action):
            raise PermissionDenied
        reason_form = ReasonForm(request.POST if request.POST.get("post") == "yes" else None)
        if reason_form.is_valid():
            return self._execute(request, queryset, action, reason_form.cleaned_data["reason"])
        plan = actions.plan_action(action, queryset, sample=CONFIRM_SAMPLE)
        action_label = LoopActionBatch.Action(action).label
        context = {
            **self.admin_site.each_context(request),
            "title": f"{action_label}: are you sure?",
            "subtitle": None,
            "opts": self.model._meta,
            "plan": plan,
            "plan_table": PlannedLoopTable(plan, action_label),
            "action_name": name,
            "action_label": action_label,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "reason_form": reason_form,
            "threshold": settings.A2I_BULK_ACTION_THRESHOLD,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.action_confirmation_template, context)

    def _execute(self, request, queryset, action, reason):
        try:
            batch = actions.create_batch(request.user, action, reason, queryset)
        except ValueError as exc:
            self.message_user(request, f"Nothing was done: {exc}.", messages.WARNING)
            return None
        batch_url = reverse("actions:batch", args=[batch.pk])
        if tasks.dispatch_batch(batch):
            self.message_user(request, f"{batch.total} loop{pluralize(batch.total)} queued for a worker.", messages.INFO)
            return HttpResponseRedirect(batch_url)
        level = {"error": messages.ERROR, "warning": messages.WARNING}.get(actions.batch_level(batch), messages.SUCCESS)
        self.message_user(request, format_html('{} (<a href="{}">details</a>)', batch.summary, batch_url), level)
        return None


ACTION_OF = {
    "stop_human_loops": LoopActionBatch.Action.STOP,
    "delete_human_loops": LoopActionBatch.Action.DELETE,
    "stop_and_delete_human_loops": LoopActionBatch.Action.STOP_AND_DELETE,
}


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "started_at", "flow_definition", "kind", "outcome", "duration", "pages", "loops_seen", "created", "updated", "marked_deleted",
    )
    list_filter = ("outcome", "kind", "flow_definition", "started_at")
    search_fields = ("flow_definition__name", "flow_definition__arn", "error")
    date_hierarchy = "started_at"
    list_select_related = ("flow_definition",)


@admin.register(ReceivedEvent)
class ReceivedEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("received_at", "event_id", "loop", "status", "event_time", "transport", "result")
    list_filter = ("result", "transport", "status", "received_at")
    search_fields = ("=event_id", "=loop__name")
    date_hierarchy = "received_at"
    list_select_related = ("loop",)
    show_full_result_count = False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("worker", "last_beat_at")


@admin.register(LoopActionBatch)
class LoopActionBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "user", "action", "total", "state", "summary", "progress_page")
    list_filter = ("action", "state", "created_at")
    search_fields = ("user__username", "reason", "summary")
    date_hierarchy = "created_at"
    list_select_related = ("user",)

    @admin.display(description="Progress")
    def progress_page(self, obj):
        return format_html('<a href="{}">open</a>', reverse("actions:batch", args=[obj.pk]))


@admin.register(LoopAction)
class LoopActionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The audit log: one row per attempt. Read-only; exportable as CSV."""

    list_display = ("created_at", "user", "loop", "action", "reason", "outcome", "detail", "batch")
    list_filter = ("action", "outcome", "created_at")
    search_fields = ("loop__name", "loop__arn", "user__username", "reason", "detail")
    date_hierarchy = "created_at"
    list_select_related = ("user", "loop", "batch", "batch__user")
    show_full_result_count = False
    actions = ("export_as_csv",)

    @admin.action(permissions=["view"], description="Export selected attempts as CSV")
    def export_as_csv(self, request, queryset):
        response = StreamingHttpResponse(audit_service.iter_audit_csv(queryset.order_by("-created_at", "-id")), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="loop-actions.csv"'
        return response


# --- alerts: rules and channels are edited by whoever holds manage_alerts; the rest is a record ---


class ManageAlertsMixin:
    """Add, change and delete with the manage_alerts permission (the operator role), not the model's own."""

    def has_module_permission(self, request):
        return request.user.has_perm(MANAGE_ALERTS) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(MANAGE_ALERTS) or super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return request.user.has_perm(MANAGE_ALERTS)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(MANAGE_ALERTS)

    def has_delete_permission(self, request, obj=None):
        return request.user.has_perm(MANAGE_ALERTS)


@admin.register(AlertRule)
class AlertRuleAdmin(ManageAlertsMixin, admin.ModelAdmin):
    list_display = ("name", "kind", "flow_definition", "enabled", "muted_until", "last_evaluated_at")
    list_filter = ("kind", "enabled")
    filter_horizontal = ("channels",)
    readonly_fields = ("created_by", "created_at", "last_evaluated_at", "evaluation_claimed_until")


@admin.register(AlertChannel)
class AlertChannelAdmin(ManageAlertsMixin, admin.ModelAdmin):
    list_display = ("name", "kind", "consecutive_failures", "last_attempt_at")
    list_filter = ("kind",)
    readonly_fields = ("created_by", "created_at", "consecutive_failures", "last_attempt_at", "last_error")


class AlertRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    def has_module_permission(self, request):
        return request.user.has_perm(MANAGE_ALERTS) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(MANAGE_ALERTS) or super().has_view_permission(request, obj)


@admin.register(AlertState)
class AlertStateAdmin(AlertRecordAdmin):
    list_display = ("rule", "flow_definition", "status", "episode", "changed_at", "evaluated_at")
    list_filter = ("status",)
    list_select_related = ("rule", "flow_definition")


@admin.register(AlertTransition)
class AlertTransitionAdmin(AlertRecordAdmin):
    list_display = ("created_at", "rule", "flow_definition", "kind", "episode", "muted")
    list_filter = ("kind", "muted")
    list_select_related = ("rule", "flow_definition")


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(AlertRecordAdmin):
    list_display = ("created_at", "channel", "transition", "status", "attempts", "http_status", "error")
    list_filter = ("status",)
    list_select_related = ("channel", "transition__rule")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Tokens are created on the "API tokens" page (shown once there); the admin lists and revokes them."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    exclude = ("digest",)
    actions = ("revoke_tokens",)

    def has_revoke_permission(self, request):
        return request.user.is_superuser

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token{pluralize(count)} revoked.", messages.SUCCESS)
