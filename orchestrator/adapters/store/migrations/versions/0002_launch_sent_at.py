"""launch_sent_at and a (provider, run_id) index, for reconciling lost launches

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launch_sent_at", sa.Float(), nullable=True))
        batch_op.create_index("ix_jobs_provider_run_id", ["provider", "run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_provider_run_id")
        batch_op.drop_column("launch_sent_at")
