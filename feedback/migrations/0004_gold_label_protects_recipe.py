from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0003_evaluation_jobs'),
    ]

    operations = [
        migrations.AlterField(
            model_name='goldlabel',
            name='recipe',
            field=models.ForeignKey(db_index=False, on_delete=models.deletion.PROTECT, related_name='gold_labels', to='tagging.recipe'),
        ),
    ]
