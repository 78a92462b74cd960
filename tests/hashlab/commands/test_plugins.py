"""Commands and numeric checks that the trainer and the reproduction register through entry points."""

from __future__ import annotations

import pytest

from hashlab.cli import BUILTIN_COMMANDS, build_parser, check_command_installed, command_names, main
from hashlab.commands.plugins import command_entry_points, load_equivalence
from hashlab.io.errors import EnvironmentProblem, UsageError


def test_the_installed_packages_register_train_and_reproduce():
    eps = command_entry_points()
    assert eps["train"].value == "trainers.torch_backend.cli:register"
    assert eps["reproduce"].value == "analysis.reproduce:register"
    assert command_names() == ("build", "cluster", "stats", "train", "check", "figure", "reproduce")
    assert set(BUILTIN_COMMANDS) < set(command_names())


def test_help_lists_plugin_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "train" in out and "reproduce" in out


def test_a_plugin_command_gets_its_own_parser():
    args = build_parser().parse_args(["reproduce", "--profile", "smoke", "--out", "x"])
    assert args.command == "reproduce" and args.profile == "smoke" and callable(args.func)


def test_registered_equivalence_checks_load():
    from trainers.torch_backend.equivalence import check_conv_equivalence, check_rnn_equivalence

    assert load_equivalence("conv") is check_conv_equivalence
    assert load_equivalence("rnn") is check_rnn_equivalence


def test_a_missing_check_names_the_install_command():
    with pytest.raises(EnvironmentProblem, match=r"no numeric lstm check is installed.*pip install"):
        load_equivalence("lstm")


def test_a_command_whose_package_is_not_registered_says_how_to_get_it():
    check_command_installed("train", command_names())  # registered here: no error
    check_command_installed("no-such-command", BUILTIN_COMMANDS)  # argparse's own error handles the unknown
    with pytest.raises(UsageError, match=r"`hashlab train` comes from an entry point .* pip install -e"):
        check_command_installed("train", BUILTIN_COMMANDS)
