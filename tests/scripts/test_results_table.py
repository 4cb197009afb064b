from scripts.results_table import _ensemble_command


def test_a_selected_ensemble_is_recreated_with_its_dropped_members() -> None:
    row = {
        "name": "picked",
        "members": "8=0.25, 2=0.59",
        "dropped": "1, 10",
        "validation": "… ; stacking with member selection cross-fitted over 5 patient folds",
    }
    assert _ensemble_command(row) == (
        "`cxrq ensemble create picked --member 1=1 --member 2=1 --member 8=1 --member 10=1"
        " && cxrq ensemble fit picked --select`"
    )


def test_a_plain_fit_has_no_select_flag() -> None:
    row = {"name": "f", "members": "1=0.5, 2=0.5", "dropped": "", "validation": "stacking"}
    assert _ensemble_command(row).endswith("cxrq ensemble fit f`")


def test_a_train_command_names_only_what_differs_from_the_preset() -> None:
    from scripts.results_table import train_command
    from training.config import make_config

    plain = make_config("cnn", "seed")
    assert train_command("cnn", plain) == (
        "`cxrq train --arch cnn --preset seed --data ../shared/data/chest_xray`"
    )
    config = make_config("cnn", "tuned", img_size=128, init_seed=2)
    assert train_command("cnn-128", config) == (
        "`cxrq train --arch cnn --preset tuned --img-size 128 --init-seed 2 --name cnn-128"
        " --data ../shared/data/chest_xray`"
    )
