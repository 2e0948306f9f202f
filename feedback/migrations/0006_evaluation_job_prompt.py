import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0005_feedback'),
        ('prompts', '0009_default_judging_prompt'),
    ]

    operations = [
        migrations.AddField(
            model_name='evaluationjob',
            name='compared_with',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='drafts_compared', to='feedback.evaluationjob'),
        ),
        migrations.AddField(
            model_name='evaluationjob',
            name='prompt_label',
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AddField(
            model_name='evaluationjob',
            name='prompt_version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='prompts.promptversion'),
        ),
        migrations.AddField(
            model_name='evaluationjob',
            name='system_template',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='evaluationjob',
            name='user_template',
            field=models.TextField(blank=True),
        ),
        migrations.AddConstraint(
            model_name='evaluationjob',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('system_template', ''), ('user_template', '')), models.Q(models.Q(('system_template', ''), _negated=True), models.Q(('user_template', ''), _negated=True)), _connector='OR'), name='feedback_evaluationjob_templates_both_or_neither'),
        ),
    ]
