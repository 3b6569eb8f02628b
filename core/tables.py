"""The tables as SQLAlchemy Core handles, for statements built without the ORM.

Declared once here so every module names them alike (`send_t`, `contact_t`, …).
"""

import sqlalchemy as sa

from core.models import (
    Action, Contact, Enrollment, Erasure, ErasureHold, Event, JobLease, Outbox, ProviderEvent, Send, SendBatch, Setting, Signup,
    Tally, Worker,
)
from core.notion.models import NotionPageLink

action_t: sa.Table = Action.__table__
batch_t: sa.Table = SendBatch.__table__
contact_t: sa.Table = Contact.__table__
enrollment_t: sa.Table = Enrollment.__table__
erasure_t: sa.Table = Erasure.__table__
erasure_hold_t: sa.Table = ErasureHold.__table__
event_t: sa.Table = Event.__table__
lease_t: sa.Table = JobLease.__table__
outbox_t: sa.Table = Outbox.__table__
page_t: sa.Table = NotionPageLink.__table__
provider_event_t: sa.Table = ProviderEvent.__table__
send_t: sa.Table = Send.__table__
setting_t: sa.Table = Setting.__table__
signup_t: sa.Table = Signup.__table__
tally_t: sa.Table = Tally.__table__
worker_t: sa.Table = Worker.__table__
