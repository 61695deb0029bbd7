"""The total-FLOP stopper with made-up reports."""

from tunelab.search import FlopBudgetStopper


def test_stops_all_once_trials_together_spend_the_budget(tmp_path):
    stop = FlopBudgetStopper(100.0, tmp_path / "spent.json")
    assert not stop("a", {"flops": 30.0})
    assert not stop("b", {"flops": 40.0})
    assert not stop("a", {"flops": 50.0})  # cumulative per trial: a's latest counts, not the sum of a's
    assert not stop.stop_all()
    assert stop("b", {"flops": 60.0})  # 50 + 60 >= 100
    assert stop.stop_all()


def test_a_resumed_search_remembers_what_was_spent(tmp_path):
    stop = FlopBudgetStopper(100.0, tmp_path / "spent.json")
    stop("a", {"flops": 70.0})
    again = FlopBudgetStopper(100.0, tmp_path / "spent.json")
    assert again("b", {"flops": 30.0})
