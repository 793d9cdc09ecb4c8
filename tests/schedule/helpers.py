"""Small helpers shared by the schedule tests."""

from __future__ import annotations

from patient_portal.schedule import services


def visit(participant, code):
    """The participant's visit with this protocol code."""
    return services.visit_by_code(participant, code)
