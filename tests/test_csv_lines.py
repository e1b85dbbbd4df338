"""The CSV-line parser (pure pyarrow, no Spark): header checks and each bad-row case on inline lines."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from gap_spark.core.errors import IngestError
from gap_spark.ops.csv_lines import (
    LineParser,
    classify_line,
    count_by_kind,
    output_arrow_schema,
    validate_header,
)

DIM = 3
HEADER = ",path,label,0,1,2"


# ---------------------------------------------------------------- header


@pytest.mark.parametrize("header, problem", [
    ("", "empty"),
    ("idx,path,label,0,1,2", "first header column must be empty"),
    (",file,label,0,1,2", "path,label"),
    (",path,label,0,2,3", "column 4 is '2', expected '1'"),
    (",path,label", "at least one feature"),
    (",path,label,a,b", "expected '0'"),
])
def test_bad_headers_name_the_file_and_problem(header, problem):
    with pytest.raises(IngestError) as info:
        validate_header(header, "/x/train.csv")
    assert "/x/train.csv" in str(info.value) and problem in str(info.value)


def test_good_header_gives_dim():
    assert validate_header(",path,label," + ",".join(map(str, range(1024))), "f") == 1024


# ---------------------------------------------------------------- the parser, without Spark


def parse(lines: list[str], classes: int = 5):
    parser = LineParser(DIM, classes, HEADER)
    result = parser.parse(pa.array(range(len(lines)), pa.int64()), pa.array(lines, pa.string()))
    good = pa.Table.from_batches(result.good, schema=result.good[0].schema) if result.good else None
    return good, {b.pos: (b.kind, b.reason) for b in result.bad}, result.lines


BAD_CASES = {
    "0,a.jpg,1,0.1,0.2": ("field_count", "expected 6, got 5"),
    "1,b.jpg,1,0.1,0.2,0.3,0.4": ("field_count", "expected 6, got 7"),
    "2,c.jpg,1,0.1,abc,0.3": ("unparsable", "column '1'"),
    "3,d.jpg,1,nan,0.2,0.3": ("non_finite", "column '0'"),
    "4,e.jpg,1,0.1,inf,0.3": ("non_finite", "column '1'"),
    "5,f.jpg,1,0.1,0.2,-inf": ("non_finite", "column '2'"),
    "6,g.jpg,1,0.1,,0.3": ("empty_feature", "column '1'"),
    "7,h.jpg,9,0.1,0.2,0.3": ("label_range", "label 9 outside [0, 5)"),
    "8,i.jpg,-1,0.1,0.2,0.3": ("label_range", "label -1"),
    "9,j.jpg,2.5,0.1,0.2,0.3": ("label_type", "not an integer"),
    "10,k.jpg,cat,0.1,0.2,0.3": ("label_type", "not a number"),
    "x,l.jpg,1,0.1,0.2,0.3": ("row_id", "row_id"),
    "12,m.jpg,1,0.1,1e39,0.3": ("non_finite", "column '1'"),
}


@pytest.mark.parametrize("line", list(BAD_CASES))
def test_each_bad_row_case_is_isolated_with_its_reason(line):
    good_line = "100,ok.jpg,1,0.5,0.25,0.125"
    good, bad, n_lines = parse([good_line, line, good_line.replace("100,ok", "101,ok2")])
    kind, words = BAD_CASES[line]
    assert n_lines == 3
    assert list(bad) == [1] and bad[1][0] == kind and words in bad[1][1]
    assert good.column("row_id").to_pylist() == [100, 101]


def test_quoted_path_with_commas_and_header_and_blank_lines():
    lines = [HEADER, '0,"a,b ""c"".jpg",1,0.5,0.25,0.125', "   ", "1,x.jpg,4,1,2,3"]
    good, bad, n_lines = parse(lines)
    assert good.column("path").to_pylist() == ['a,b "c".jpg', "x.jpg"]
    assert good.column("features").to_pylist() == [[0.5, 0.25, 0.125], [1.0, 2.0, 3.0]]
    assert good.column("label").type == pa.int32()
    assert bad == {2: ("blank", "blank line")} and n_lines == 3  # the header is not a row


def test_classify_line_accepts_a_good_line():
    assert classify_line("0,p.jpg,1,0.1,0.2,0.3", DIM, 5) is None


def test_good_rows_match_numpy_float32_parsing_and_keep_their_order():
    rng = np.random.default_rng(7)
    values = rng.standard_normal((300, DIM)) * 10.0 ** rng.integers(-6, 6, (300, DIM))
    lines = [f"{i},p/{i}.jpg,{i % 5}," + ",".join(repr(float(v)) for v in row) for i, row in enumerate(values)]
    bad_at = {17, 18, 150, 299}
    for i in bad_at:
        lines[i] = lines[i].replace(",", ";", 3)
    good, bad, n_lines = parse(lines)
    assert n_lines == 300 and set(bad) == bad_at
    kept = [i for i in range(300) if i not in bad_at]
    assert good.column("row_id").to_pylist() == kept
    assert good.column("label").to_pylist() == [i % 5 for i in kept]
    features = np.array(good.column("features").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(features, values[kept].astype(np.float32))


def test_good_rows_have_the_output_schema_and_bad_rows_count_by_kind():
    lines = ["0,a.jpg,1,1,2,3", "1,b.jpg,9,1,2,3", "2,c.jpg,1,1,,3", "3,d.jpg,7,1,2,3", ""]
    parser = LineParser(DIM, 5)
    result = parser.parse(pa.array(range(len(lines)), pa.int64()), pa.array(lines, pa.string()))
    assert [b.schema for b in result.good] == [output_arrow_schema()]
    assert [(b.pos, b.kind) for b in result.bad] == [(4, "blank"), (1, "label_range"), (2, "empty_feature"),
                                                     (3, "label_range")]
    triples = [(b.pos, b.kind, b.reason) for b in result.bad]
    assert count_by_kind(triples) == {"blank": 1, "label_range": 2, "empty_feature": 1}
    assert list(count_by_kind(triples, not_kept=3)) == ["blank", "label_range", "empty_feature", "not_kept"]
    assert count_by_kind([], 0) == {}
