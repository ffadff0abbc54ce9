import pytest

from nre.workflow.chunks import chunk_slice, parse_chunk


def test_chunks_partition_rows():
    for n_rows in (0, 1, 7, 100):
        for n in (1, 3, 8):
            rows = [i for k in range(n) for i in range(n_rows)[chunk_slice(n_rows, f"{k}/{n}")]]
            assert rows == list(range(n_rows))


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "a/b", "1"])
def test_bad_chunk_spec(bad):
    with pytest.raises(ValueError, match="chunk"):
        parse_chunk(bad)
