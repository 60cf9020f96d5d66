"""Genotypes (optnb.nas.genotypes): published cells, safe parsing, JSON, arity, validation."""

from __future__ import annotations

import json

import pytest

from optnb.nas import genotypes as G
from optnb.nas.errors import GenotypeError, UnknownNameError

DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)
HB = G.Genotype(
    normal=[("sep_conv_3x3", 1), ("skip_connect", 1), ("neg_skip_connect", 0),
            ("dil_conv_3x3", 2), ("skip_connect", 2), ("neg_skip_connect", 1),
            ("sep_conv_5x5", 3), ("skip_connect", 3), ("neg_skip_connect", 2),
            ("max_pool_3x3", 4), ("skip_connect", 4), ("neg_skip_connect", 3)],
    normal_concat=range(2, 6),
    reduce=[("max_pool_3x3", 1), ("sep_conv_3x3", 1), ("neg_skip_connect", 0),
            ("avg_pool_3x3", 2), ("skip_connect", 2), ("neg_skip_connect", 1),
            ("sep_conv_3x3", 3), ("skip_connect", 3), ("neg_skip_connect", 2),
            ("dil_conv_5x5", 4), ("skip_connect", 4), ("neg_skip_connect", 3)],
    reduce_concat=range(2, 6))


def test_published_cells_by_name():
    v2 = G.get("DARTS_V2")
    assert v2.normal[-1] == ("dil_conv_3x3", 2) and v2.reduce[0] == ("max_pool_3x3", 0)
    assert G.same(G.get("DARTS"), v2)
    assert G.get("DARTS_V1").normal[0] == ("sep_conv_3x3", 1)
    assert G.get("PC_DARTS").reduce[0] == ("sep_conv_5x5", 1)
    assert G.get("PDARTS").normal[-1] == ("dil_conv_5x5", 4)
    with pytest.raises(UnknownNameError, match="unknown genotype 'DARTS_V3'.*DARTS_V2"):
        G.get("DARTS_V3")


def test_darts_text_with_range_round_trips():
    g = G.parse(DARTS_V2_TEXT)
    assert g == G.get("DARTS_V2")
    assert g.normal_concat == [2, 3, 4, 5]  # range normalised to a list
    assert G.parse(G.to_text(g)) == g
    assert G.parse(repr(G.DARTS_V2)) == g  # the original repr with lists
    assert G.parse(repr(G.PC_DARTS_cifar)) == G.get("PC_DARTS")  # repr shows range(2, 6)
    assert "range(2, 6)" in repr(G.PC_DARTS_cifar)


def test_json_round_trip_and_arity_3():
    for g in (G.get("PDARTS"), G.normalize(HB)):
        text = G.to_json(g)
        assert json.loads(text)["normal"][0] == list(g.normal[0])
        assert G.from_json(text) == g
        assert G.parse(text) == g
        assert G.from_json(json.loads(text)) == g
    assert G.arity(HB) == 3 and G.arity(G.get("DARTS_V2")) == 2
    assert G.parse(G.to_text(HB)) == G.normalize(HB)


def test_count_parameter_free():
    assert G.count_parameter_free(G.get("DARTS_V2")) == {"normal": 2, "reduce": 8}
    assert G.count_parameter_free(HB)["normal"] == 9


@pytest.mark.parametrize("text, message", [
    ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed"),
    ("__import__('os').system('true')", "must be a Genotype"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('skip', 1)], normal_concat=[2], "
     "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])", "unknown operation 'skip'"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 2)], normal_concat=[2], "
     "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2])", "node 0 can only read states 0..1"),
    ("Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2, 3], "
     "reduce=[('sep_conv_3x3', 0)], reduce_concat=[2])", "do not split evenly"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
     "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)])", "lacks the fields"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
     "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=list(range(2)))", "only"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=[2], "
     "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce_concat=[2], extra=1)", "unexpected"),
    ('{"normal": [], "reduce": []}', "needs exactly the keys"),
    ('{"normal": [', "JSON is malformed"),
])
def test_malformed_genotypes_raise_clear_errors(text, message):
    with pytest.raises(GenotypeError, match=message):
        G.parse(text)


def test_parse_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"Genotype(normal=open({str(marker)!r}, 'w'), normal_concat=[2], reduce=[], reduce_concat=[2])"
    with pytest.raises(GenotypeError):
        G.parse(payload)
    assert not marker.exists()


def test_unknown_name_and_empty_input():
    with pytest.raises(UnknownNameError, match="unknown genotype 'nope'"):
        G.parse("nope")
    with pytest.raises(GenotypeError, match="expected a genotype name"):
        G.parse("  ")
    with pytest.raises(ValueError):  # every NAS error is a ValueError
        G.parse("nope")
