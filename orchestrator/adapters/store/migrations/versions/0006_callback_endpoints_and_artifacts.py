"""callback endpoints, batch completion, kept artifacts

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callback_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("workflows", sa.JSON(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("secret", sa.String(length=500), nullable=False),
        sa.Column("previous_secret", sa.String(length=500), nullable=True),
        sa.Column("previous_until", sa.Float(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("failing_since", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completed_at", sa.Float(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifacts", sa.JSON(), nullable=True))
        # "Has this batch a job still going?" at every job end of a batch.
        batch_op.create_index("ix_jobs_batch_id_status", ["batch_id", "status"], unique=False)
    # Batches that ended before this revision are complete already: without this the
    # sweep would send each of them a batch.completed now.
    op.execute(
        "UPDATE batches SET completed_at = (SELECT max(coalesce(jobs.finished_at, "
        "jobs.updated_at)) FROM jobs WHERE jobs.batch_id = batches.id) "
        "WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id AND jobs.status "
        "IN ('queued', 'starting', 'running'))")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_batch_id_status")
        batch_op.drop_column("artifacts")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("completed_at")
    op.drop_table("callback_endpoints")
