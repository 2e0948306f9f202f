from django.apps import AppConfig


class TaxonomyConfig(AppConfig):
    name = "taxonomy"
    verbose_name = "Taxonomy"

    def ready(self) -> None:
        from taxonomy.services.versions import taxonomy_version_signals_connect

        # Every save of what decides tags leads to a new version (after commit, once per transaction).
        taxonomy_version_signals_connect()
