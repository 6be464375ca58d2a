"""Training figures: whole-number steps, units on every axis, learning rate, resume mark, rates apart."""

from coder_align.training.plots import accuracy_figure, loss_figure, plot_loss, rewards_figure

HISTORY = [{"step": s, "loss": 3.0 - 0.4 * s, "learning_rate": 1e-4 * s} for s in (1, 2, 3)]


def _labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_loss_figure_has_integer_steps_a_learning_rate_panel_and_the_resume_mark():
    fig = loss_figure(HISTORY, "SFT training loss", resumed_from_step=2)
    loss_ax, lr_ax = fig.axes
    fig.canvas.draw()
    ticks = [t for t in lr_ax.get_xticks() if lr_ax.get_xlim()[0] <= t <= lr_ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no step 1.5
    assert lr_ax.get_ylabel() == "learning rate" and lr_ax.get_xlabel() == "optimizer step"
    assert list(lr_ax.get_lines()[0].get_ydata()) == [h["learning_rate"] for h in HISTORY]
    assert "loss" in loss_ax.get_ylabel()
    for ax in (loss_ax, lr_ax):
        assert "resumed from step 2" in _labels(ax)


def test_nothing_logged_draws_nothing(tmp_path):
    assert plot_loss([{"step": 1, "learning_rate": 1e-4}], tmp_path / "loss.png", "t") is False
    assert not (tmp_path / "loss.png").exists()


def test_rewards_figure_keeps_reward_units_and_rates_apart():
    history = [{"step": s, "reward": 0.5 * s, "rewards/unit_test_reward/mean": 0.4 * s,
                "rewards/format_reward/mean": 1.0, "code/pass_rate": 0.4 * s, "code/compile_rate": 0.9,
                "completions/clipped_ratio": 0.25, "frac_reward_zero_std": 0.5} for s in (1, 2)]
    fig = rewards_figure(history, {"unit_test_reward": 1.0, "format_reward": 0.1})
    rewards_ax, rates_ax = fig.axes
    assert rewards_ax.get_ylabel() == "mean reward per completion" and "value" not in rewards_ax.get_ylabel()
    assert _labels(rewards_ax) == ["total (weighted sum)", "unit_test_reward (weight 1)", "format_reward (weight 0.1)"]
    assert set(_labels(rates_ax)) == {"pass rate (all tests passed)", "compile rate",
                                      "clipped at max_completion_length",
                                      "groups with zero reward spread (no signal)"}
    assert rates_ax.get_ylabel() == "fraction (0-1)" and rates_ax.get_ylim() == (-0.03, 1.03)


def test_accuracy_figure_shows_training_and_held_out_accuracy_against_chance():
    history = [{"step": s, "loss": 0.7 - 0.1 * s, "accuracy": 0.5 + 0.1 * s} for s in (1, 2, 3)]
    history += [{"step": 3, "eval_accuracy": 0.8, "eval_loss": 0.4}]
    fig = accuracy_figure(history, {"pairwise_accuracy": 0.8, "pairs": 40, "auc": 0.75})
    accuracy_ax, loss_ax = fig.axes
    assert _labels(accuracy_ax) == ["training batches", "held-out pairs", "chance"]
    assert "pairwise accuracy" in accuracy_ax.get_ylabel() and accuracy_ax.get_ylim() == (-0.03, 1.03)
    assert "0.800 on 40 pairs" in accuracy_ax.get_title() and "AUC 0.750" in accuracy_ax.get_title()
    assert _labels(loss_ax) == ["training loss", "held-out loss"] and loss_ax.get_xlabel() == "optimizer step"
    assert accuracy_figure([{"step": 1, "eval_accuracy": 0.5}]) is None  # nothing trained, nothing drawn
