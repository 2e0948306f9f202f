"""A single-row version of the tags, raised by PostgreSQL on every write to them (taxonomy.selectors.tags_version).

The in-process caches of what the taggers read of the tags (the tag matrix, the loaded tagger state) compare it
with one primary-key read instead of an aggregate over every tag row. Statement-level triggers on the tag tables
see every way a row can change: `save()`, `QuerySet.update()`, bulk writes, deletes (cascades included) and
TRUNCATE. The new number is drawn from a sequence, which a rollback does not rewind: a cache built inside a
transaction that was rolled back never matches a later state. The triggers run before the statement, so a
transaction takes the version's row lock before any tag row's: concurrent writers of the tags queue on it
instead of deadlocking on each other's rows. The table is not a model, so that a test
database's flush (TRUNCATE of the models' tables) leaves it and its row in place.
"""

from django.db import migrations

FORWARD = [
    "CREATE SEQUENCE taxonomy_tags_version_number_seq",
    """
    CREATE TABLE taxonomy_tags_version (
        id smallint PRIMARY KEY CONSTRAINT taxonomy_tags_version_one_row CHECK (id = 1),
        number bigint NOT NULL
    )
    """,
    "INSERT INTO taxonomy_tags_version (id, number) VALUES (1, nextval('taxonomy_tags_version_number_seq'))",
    """
    CREATE FUNCTION taxonomy_tags_version_raise() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE taxonomy_tags_version SET number = nextval('taxonomy_tags_version_number_seq') WHERE id = 1;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER taxonomy_tag_raises_tags_version
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON taxonomy_tag
    FOR EACH STATEMENT EXECUTE FUNCTION taxonomy_tags_version_raise()
    """,
    """
    CREATE TRIGGER taxonomy_tagembedding_raises_tags_version
    BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON taxonomy_tagembedding
    FOR EACH STATEMENT EXECUTE FUNCTION taxonomy_tags_version_raise()
    """,
]

BACKWARD = [
    "DROP TRIGGER taxonomy_tagembedding_raises_tags_version ON taxonomy_tagembedding",
    "DROP TRIGGER taxonomy_tag_raises_tags_version ON taxonomy_tag",
    "DROP FUNCTION taxonomy_tags_version_raise()",
    "DROP TABLE taxonomy_tags_version",
    "DROP SEQUENCE taxonomy_tags_version_number_seq",
]


class Migration(migrations.Migration):
    dependencies = [
        ("taxonomy", "0007_tag_embeddings_of_other_models"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
