"""Row keys for ingest's duplicate check, on inline frames (chispa)."""
from __future__ import annotations

from chispa import assert_df_equality


def test_find_duplicates_flags_every_copy_and_names_the_key(spark):
    from gap_spark.ops.row_keys import find_duplicates

    good = spark.createDataFrame(
        [(1, "a.jpg", 0), (2, "b.jpg", 1), (2, "c.jpg", 1), (3, "d.jpg", 2), (4, "d.jpg", 2), (5, "e.jpg", 3),
         (5, "e.jpg", 3)],
        "row_id long, path string, label int")
    expected = spark.createDataFrame(
        [(2, "b.jpg", "duplicate_row_id"), (2, "c.jpg", "duplicate_row_id"), (3, "d.jpg", "duplicate_path"),
         (4, "d.jpg", "duplicate_path"), (5, "e.jpg", "duplicate_row_id"), (5, "e.jpg", "duplicate_row_id")],
        "row_id long, path string, kind string")
    assert_df_equality(find_duplicates(good), expected, ignore_row_order=True, ignore_nullable=True)


def test_find_duplicates_of_unique_keys_is_empty(spark):
    from gap_spark.ops.row_keys import find_duplicates

    good = spark.createDataFrame([(1, "a.jpg"), (2, "b.jpg")], "row_id long, path string")
    assert find_duplicates(good).count() == 0


def test_extract_keys_reads_the_index_and_unquotes_the_path(spark):
    from gap_spark.ops.row_keys import extract_keys

    lines = spark.createDataFrame(
        [(0, "7,plain/a.jpg,1,0.5"), (1, '8,"with,comma ""q"".jpg",2,0.5'), (2, "x,bad.jpg,1,0.5"),
         (3, "9,,1,0.5")],
        "pos long, value string")
    expected = spark.createDataFrame(
        [(0, "7,plain/a.jpg,1,0.5", 7, "plain/a.jpg"),
         (1, '8,"with,comma ""q"".jpg",2,0.5', 8, 'with,comma "q".jpg'),
         (2, "x,bad.jpg,1,0.5", None, "bad.jpg"),
         (3, "9,,1,0.5", 9, "")],
        "pos long, value string, row_id long, path string")
    assert_df_equality(extract_keys(lines), expected, ignore_nullable=True)
