from django.contrib import admin

from .models import Membership, Project, Quota
from .services import membership_remove


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


class QuotaInline(admin.StackedInline):
    model = Quota
    extra = 0
    max_num = 1


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    inlines = [MembershipInline, QuotaInline]

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        changed = formset.save(commit=False)
        # Removals go through the service, which cuts the user's open sockets off.
        for membership in formset.deleted_objects:
            membership_remove(project=membership.project, user=membership.user)
        for membership in changed:
            membership.save()
        formset.save_m2m()
