"""Who may use the re-tagging API: staff holding the RetagJob model permissions (as in admin)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from autotagger.permissions import is_staff

RETAG_JOB_VIEW = "retagging.view_retagjob"
RETAG_JOB_ADD = "retagging.add_retagjob"
RETAG_JOB_CHANGE = "retagging.change_retagjob"


def can_read_retag_jobs(user: Any) -> bool:
    return is_staff(user) and (user.has_perm(RETAG_JOB_VIEW) or user.has_perm(RETAG_JOB_CHANGE))


class CanReadRetagJobs(BasePermission):
    message = "Re-tagging jobs are for staff with the permission to view them."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_read_retag_jobs(request.user)


class CanAddRetagJobs(BasePermission):
    """Reading needs the view permission; creating a job the add permission too."""

    message = "Creating a re-tagging job needs the permission to add re-tagging jobs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return can_read_retag_jobs(request.user)
        return can_read_retag_jobs(request.user) and request.user.has_perm(RETAG_JOB_ADD)


class CanChangeRetagJobs(BasePermission):
    message = "Applying, rolling back or cancelling a re-tagging job needs the permission to change them."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff(request.user) and request.user.has_perm(RETAG_JOB_CHANGE)
