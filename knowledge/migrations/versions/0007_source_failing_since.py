"""Sources: since when a failing source has been failing (the App Home of the designated
machine learners shows it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-18
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
    # A source failing already: its last sync is the earliest failure known.
    op.execute("UPDATE sources SET failing_since = last_sync_at WHERE last_error IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("failing_since")
