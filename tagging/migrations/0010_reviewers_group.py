"""The "reviewers" group: people who read every recipe, run, job and tag assignment (autotagger.permissions)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# As they are today: a migration keeps meaning what it meant when it was written.
GROUP = "reviewers"
PERMISSIONS = ("view_recipe", "view_taggingrun", "view_taggingjob", "view_tagassignment")


def reviewers_group_create(apps, schema_editor):
    # On a new database the permissions are only created after every migration ran (post_migrate): make
    # this app's now.
    tagging = apps.get_app_config("tagging")
    tagging.models_module = True
    create_permissions(tagging, apps=apps, verbosity=0)
    tagging.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="tagging", codename__in=PERMISSIONS))


def reviewers_group_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("tagging", "0009_recipe_created_by"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(reviewers_group_create, reviewers_group_delete)]
