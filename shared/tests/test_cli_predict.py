"""``add_predict_command``: ``--batch-size`` unless the package's predict runs each input on its own."""

import argparse

import pytest

from perception_shared import cli


def predict_parser(**kwargs):
    parser = argparse.ArgumentParser()
    cli.add_predict_command(parser.add_subparsers(dest="command"), inputs_help="images", **kwargs)
    return parser


def test_predict_takes_a_batch_size_by_default():
    assert predict_parser().parse_args(["predict", "--run", "r", "x.png", "--batch-size", "8"]).batch_size == 8


def test_a_package_can_leave_the_batch_size_out(capsys):
    parser = predict_parser(batch_size=False)
    assert not hasattr(parser.parse_args(["predict", "--run", "r", "x.png"]), "batch_size")
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "--run", "r", "x.png", "--batch-size", "8"])
    assert "unrecognized arguments: --batch-size 8" in capsys.readouterr().err
