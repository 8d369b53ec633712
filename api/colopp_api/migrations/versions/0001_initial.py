"""protections, events, metric samples

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "protections",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("placement", sa.String(16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("primary_host", sa.String(64), nullable=True),
        sa.Column("secondary_host", sa.String(64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.Column("runtime", sa.JSON(), nullable=False),
        sa.Column("stopped", sa.Boolean(), nullable=False),
        sa.Column("checkpoints", sa.Integer(), nullable=False),
        sa.Column("last_checkpoint_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_protections_name", "protections", ["name"])
    op.create_index("ix_protections_state", "protections", ["state"])
    for table in ("events", "metric_samples"):
        columns: list[sa.schema.SchemaItem] = [
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column(
                "protection_id",
                sa.String(32),
                sa.ForeignKey("protections.id", ondelete="CASCADE"),
                nullable=False,
            ),
            sa.Column("t", sa.Float(), nullable=False),
        ]
        if table == "events":
            columns.append(sa.Column("type", sa.String(32), nullable=False))
        columns.append(sa.Column("data", sa.JSON(), nullable=False))
        op.create_table(table, *columns)
    op.create_index("ix_events_protection_id_id", "events", ["protection_id", "id"])
    op.create_index("ix_metric_samples_protection_id_t", "metric_samples", ["protection_id", "t"])


def downgrade() -> None:
    op.drop_index("ix_metric_samples_protection_id_t", "metric_samples")
    op.drop_index("ix_events_protection_id_id", "events")
    op.drop_table("metric_samples")
    op.drop_table("events")
    op.drop_index("ix_protections_state", "protections")
    op.drop_index("ix_protections_name", "protections")
    op.drop_table("protections")
