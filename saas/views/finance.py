"""Finance pages: summaries and on-demand reports."""
from flask import Blueprint, render_template

from saas.auth import role_required

bp = Blueprint("finance", __name__, url_prefix="/finance")


@bp.get("/reports")
@role_required("finance", "admin")
def reports():
    return render_template("finance/reports.html")
