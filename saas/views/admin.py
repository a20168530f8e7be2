"""Admin pages: dormant-account review, jobs, outbox, audit log."""
from flask import Blueprint, render_template

from saas.auth import role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/dormant")
@role_required("admin")
def dormant():
    return render_template("admin/dormant.html")


@bp.get("/jobs")
@role_required("admin")
def jobs():
    return render_template("admin/jobs.html")
