"""Knowledge that stays true: every document has owners, a verification date, its own
review interval (when set), and may be archived (kept, never cited); the last review
reminder is kept so an owner is reminded at most once a week. A draft may revise a
document: publishing it replaces that document's passages.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("owners", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("verified_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("review_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("archived_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_documents_archived_at", "documents", ["archived_at"])
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(sa.Column("revises_doc_id", sa.String(1024), nullable=True))
    # Whoever added a document owns it until someone says otherwise.
    documents = sa.table("documents", sa.column("id", sa.Integer), sa.column("added_by", sa.String),
                         sa.column("owners", sa.JSON))
    connection = op.get_bind()
    rows = connection.execute(sa.select(documents.c.id, documents.c.added_by)
                              .where(documents.c.added_by.is_not(None))).all()
    for key, added_by in rows:
        connection.execute(documents.update().where(documents.c.id == key).values(owners=[added_by]))


def downgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("revises_doc_id")
    op.drop_index("ix_documents_archived_at", table_name="documents")
    with op.batch_alter_table("documents") as batch:
        for column in ("reminded_at", "archived_by", "archived_at", "review_days", "verified_by",
                       "verified_at", "owners"):
            batch.drop_column(column)
