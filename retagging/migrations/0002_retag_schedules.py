"""Two example re-tagging schedules, disabled until staff enable them in admin: nightly, the stale recipes with
hybrid, applied; weekly, every recipe with similarity, as a dry run to review."""

import json

from django.conf import settings
import django.db.models.deletion
from django.db import migrations, models

EXAMPLES = [
    {
        "name": "nightly: stale recipes with hybrid (apply)",
        "selection": {"kind": "stale"},
        "strategy": "hybrid",
        "dry_run": False,
        "cron": {"minute": "0", "hour": "2", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*"},
    },
    {
        "name": "weekly: everything with similarity (dry run)",
        "selection": {"kind": "all"},
        "strategy": "similarity",
        "dry_run": True,
        "cron": {"minute": "0", "hour": "4", "day_of_month": "*", "month_of_year": "*", "day_of_week": "0"},
    },
]


def examples_create(apps, schema_editor):
    RetagSchedule = apps.get_model("retagging", "RetagSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    for example in EXAMPLES:
        if RetagSchedule.objects.filter(name=example["name"]).exists():
            continue
        crontab, _ = CrontabSchedule.objects.get_or_create(**example["cron"], timezone=settings.CELERY_TIMEZONE)
        schedule = RetagSchedule.objects.create(
            name=example["name"],
            selection=example["selection"],
            strategy=example["strategy"],
            config={},
            dry_run=example["dry_run"],
            enabled=False,
            **example["cron"],
        )
        # As retagging.services.schedules.retag_schedule_save makes it.
        schedule.periodic_task = PeriodicTask.objects.create(
            name=f"Re-tag: {schedule.name}",
            task="retagging.schedule_run",
            kwargs=json.dumps({"schedule_id": schedule.pk}),
            enabled=False,
            crontab=crontab,
            description=f"Created and kept in step by the re-tagging schedule {schedule.name!r}; edit it there.",
        )
        schedule.save(update_fields=["periodic_task"])


def examples_delete(apps, schema_editor):
    RetagSchedule = apps.get_model("retagging", "RetagSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    names = [example["name"] for example in EXAMPLES]
    PeriodicTask.objects.filter(retag_schedule__name__in=names).delete()
    RetagSchedule.objects.filter(name__in=names).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('retagging', '0001_retag_jobs'),
    ]

    operations = [
        migrations.CreateModel(
            name='RetagSchedule',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=150, unique=True)),
                ('selection', models.JSONField(help_text='Which recipes: {"kind": "stale"}, {"kind": "all"}, {"kind": "tag", ...}.')),
                ('strategy', models.CharField(choices=[('similarity', 'Similarity (no LLM)'), ('llm', 'LLM'), ('hybrid', 'Hybrid')], max_length=20)),
                ('config', models.JSONField(blank=True, default=dict, help_text='The TaggingConfig (k, categories, source...).')),
                ('dry_run', models.BooleanField(default=True, help_text='Store a diff report for review instead of applying.')),
                ('use_batch', models.BooleanField(default=False, help_text="Send LLM requests through the provider's Batch API.")),
                ('enabled', models.BooleanField(default=False)),
                ('minute', models.CharField(default='0', max_length=60)),
                ('hour', models.CharField(default='3', max_length=60)),
                ('day_of_month', models.CharField(default='*', max_length=60)),
                ('month_of_year', models.CharField(default='*', max_length=60)),
                ('day_of_week', models.CharField(default='*', help_text='0-6, Sunday = 0, or mon-sun.', max_length=60)),
                ('interval_minutes', models.PositiveIntegerField(blank=True, help_text='Every this many minutes instead of the crontab fields (empty: crontab).', null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('periodic_task', models.OneToOneField(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='retag_schedule', to='django_celery_beat.periodictask')),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('strategy__in', ['similarity', 'llm', 'hybrid'])), name='retagging_schedule_strategy_valid'), models.CheckConstraint(condition=models.Q(('selection__kind__in', ['all', 'stale', 'category', 'tag', 'source', 'changed_since'])), name='retagging_schedule_selection_kind_valid'), models.CheckConstraint(condition=models.Q(('interval_minutes__isnull', True), ('interval_minutes__gt', 0), _connector='OR'), name='retagging_schedule_interval_positive')],
            },
        ),
        migrations.RunPython(examples_create, examples_delete),
    ]
