"""Drop three indexes that every webhook write maintained and no query used.

- ``unique=True`` on a CharField also gives PostgreSQL a second index on the column
  (``varchar_pattern_ops``, for ``LIKE 'prefix%'``). Nothing filters ``call_id`` or
  ``body_sha256`` by prefix (the admin's search is case-insensitive ``contains``, which no
  B-tree serves), so both become unique constraints, which create the unique index only.
- ``CallEvent.call`` had an index of its own, and ``event_call_time_idx`` (call, time)
  already serves every lookup by call.

The constraints are added before the unique fields are altered, so the columns are never
without a unique index (``INSERT ... ON CONFLICT (body_sha256)`` relies on it). On SQLite,
which has no such second index, the tables are rebuilt with the same indexes as before.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("calls", "0006_call_object_event"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="call",
            constraint=models.UniqueConstraint(fields=("call_id",), name="call_call_id_uniq"),
        ),
        migrations.AddConstraint(
            model_name="callevent",
            constraint=models.UniqueConstraint(
                fields=("body_sha256",), name="event_body_sha256_uniq"
            ),
        ),
        migrations.AlterField(
            model_name="call",
            name="call_id",
            field=models.CharField(max_length=128),
        ),
        migrations.AlterField(
            model_name="callevent",
            name="body_sha256",
            field=models.CharField(max_length=64),
        ),
        migrations.AlterField(
            model_name="callevent",
            name="call",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="calls.call",
            ),
        ),
    ]
