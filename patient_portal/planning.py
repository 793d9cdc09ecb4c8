"""A participant's year, planned in order: visits, the questionnaires on them, their reminders."""

from __future__ import annotations

from patient_portal.accounts.models import Participant
from patient_portal.questionnaires import services as questionnaires
from patient_portal.reminders import planning as reminders
from patient_portal.schedule import services as schedule


def plan_year(participant: Participant, **_: object) -> bool:
    """Plan what the participant does not have yet and move what changed; idempotent.

    The order matters: questionnaires hang on visits, and reminders on both. Returns whether
    anything was created or changed.
    """
    visits = schedule.plan_visits(participant)
    assignments = questionnaires.plan_assignments(participant)
    sent = reminders.plan_reminders(participant)
    return bool(visits or assignments or sent)
