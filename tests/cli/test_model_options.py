"""`--model KEY=VALUE`: repeated or comma-separated, values typed as JSON where they parse."""

from __future__ import annotations

import pytest

from ganplug.cli.train_cmd import parse_model_options
from ganplug.errors import UserError


def test_repeated_and_comma_separated_pairs_mean_the_same():
    one = parse_model_options(["z_dim=16,w_dim=32,noise=false"])
    assert one == parse_model_options(["z_dim=16", "w_dim=32", "noise=false"])
    assert one == {"z_dim": 16, "w_dim": 32, "noise": False}


def test_a_comma_inside_a_value_is_kept_when_the_pieces_are_not_pairs():
    assert parse_model_options(["name=a,b"]) == {"name": "a,b"}


def test_a_piece_without_equals_is_refused():
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_model_options(["z_dim"])
