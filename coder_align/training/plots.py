"""Training figures, readable by someone who did not write them: `loss.png`, `rewards.png` and
`accuracy.png` (reward model).

Every figure has whole-number optimizer steps on its x axis, units on its y axes, and a
dashed line where a resumed run continued. `*_figure` builds a matplotlib Figure (tests
inspect it); `plot_*` saves and closes it, returning False when nothing was logged.
Not here: evaluation charts (`evaluation/report.py`).
"""

from __future__ import annotations

from pathlib import Path

# GRPO rates, all fractions in [0, 1], with what they count
RATES = {
    "code/pass_rate": "pass rate (all tests passed)",
    "code/compile_rate": "compile rate",
    "completions/clipped_ratio": "clipped at max_completion_length",
    "frac_reward_zero_std": "groups with zero reward spread (no signal)",
    "validation/pass@1": "validation pass@1 (greedy, held-out tasks)",  # every grpo.validation_every steps
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(h["step"], h[key]) for h in log_history if h.get(key) is not None and "step" in h]
    return [p[0] for p in points], [p[1] for p in points]


def _steps_axis(axes, resumed_from_step: int | None) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        if resumed_from_step:
            ax.axvline(resumed_from_step, color="gray", linestyle="--", linewidth=1,
                       label=f"resumed from step {resumed_from_step}")
    axes[-1].set_xlabel("optimizer step")


def _marker(xs) -> str | None:
    return "." if len(xs) < 50 else None


def loss_figure(log_history: list[dict], title: str, resumed_from_step: int | None = None):
    """Training loss above the learning rate schedule; None when no loss was logged."""
    steps, losses = _series(log_history, "loss")
    if not steps:
        return None
    plt = _pyplot()
    fig, (ax, ax_lr) = plt.subplots(2, 1, sharex=True, figsize=(6.5, 5), gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(steps, losses, marker=_marker(steps), label="training loss")
    if len(losses) >= 3:  # one logged batch is noisy: the summary's final_loss_smoothed is this line's end
        window = min(SMOOTHING_WINDOW, len(losses))
        ax.plot(steps, running_mean(losses, window), linewidth=2, linestyle="--", color="tab:blue",
                label=f"mean of the last {window} logged losses")
    ax.set_ylabel("loss (mean cross-entropy\nper supervised token)")
    ax.set_title(title)
    lr_steps, lrs = _series(log_history, "learning_rate")
    ax_lr.plot(lr_steps, lrs, color="tab:orange", marker=_marker(lr_steps))
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _steps_axis([ax, ax_lr], resumed_from_step)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def rewards_figure(log_history: list[dict], reward_weights: dict[str, float], resumed_from_step: int | None = None):
    """GRPO: the weighted total and each reward (reward units) above the rates (fractions)."""
    steps, totals = _series(log_history, "reward")
    if not steps:
        return None
    plt = _pyplot()
    fig, (ax, ax_rates) = plt.subplots(2, 1, sharex=True, figsize=(7, 6))
    noisy = len(steps) >= 20  # a step's mean over one or two groups: a running mean shows the trend
    ax.plot(steps, totals, marker=_marker(steps), linewidth=1 if noisy else 2, color="black",
            alpha=0.5 if noisy else 1.0, label="total (weighted sum)")
    if noisy:
        window = max(5, len(steps) // 10)
        ax.plot(steps, running_mean(totals, window), linewidth=2.5, color="black", linestyle="--",
                label=f"total, mean of the last {window} steps")
    for name, weight in reward_weights.items():
        xs, ys = _series(log_history, f"rewards/{name}/mean")
        if xs:
            ax.plot(xs, ys, marker=_marker(xs), label=f"{name} (weight {weight:g})")
    ax.set_ylabel("mean reward per completion")
    ax.set_title("GRPO rewards per step")
    ax.legend(fontsize=7)
    for key, label in RATES.items():
        xs, ys = _series(log_history, key)
        if xs:
            ax_rates.plot(xs, ys, marker=_marker(xs), label=label)
    ax_rates.set_ylim(-0.03, 1.03)
    ax_rates.set_ylabel("fraction (0-1)")
    ax_rates.legend(fontsize=7)
    _steps_axis([ax, ax_rates], resumed_from_step)
    fig.tight_layout()
    return fig


SMOOTHING_WINDOW = 10  # logged losses averaged for final_loss_smoothed and the dashed line in loss.png


def smoothed_final(values: list[float], window: int = SMOOTHING_WINDOW) -> dict:
    """The summary's smoothed final figure beside the last logged value: the mean of the last
    `window` logged values, and how many that was.

    >>> smoothed_final([4.0, 0.1, 0.3])
    {'final_loss_smoothed': 1.4667, 'final_loss_smoothed_over': 'mean of the last 3 logged losses'}
    """
    last = values[-window:]
    if not last:
        return {"final_loss_smoothed": None, "final_loss_smoothed_over": None}
    return {"final_loss_smoothed": round(sum(last) / len(last), 4),
            "final_loss_smoothed_over": f"mean of the last {len(last)} logged losses"}


def running_mean(values: list[float], window: int) -> list[float]:
    """Mean of each value and up to `window - 1` before it.

    >>> running_mean([0, 2, 4, 6], 2)
    [0.0, 1.0, 3.0, 5.0]
    """
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def accuracy_figure(log_history: list[dict], held_out: dict | None = None, resumed_from_step: int | None = None):
    """Reward model: pairwise accuracy (training batches, held-out pairs) above the loss."""
    steps, losses = _series(log_history, "loss")
    if not steps:
        return None
    plt = _pyplot()
    fig, (ax, ax_loss) = plt.subplots(2, 1, sharex=True, figsize=(6.5, 5.5), gridspec_kw={"height_ratios": [3, 2]})
    xs, ys = _series(log_history, "accuracy")
    if xs:
        ax.plot(xs, ys, marker=_marker(xs), alpha=0.6, label="training batches")
    xs, ys = _series(log_history, "eval_accuracy")
    if xs:
        ax.plot(xs, ys, marker="o", linewidth=2, label="held-out pairs")
    ax.axhline(0.5, color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("pairwise accuracy\n(passing scored above failing)")
    title = "Reward model: pairwise accuracy"
    if held_out and held_out.get("pairwise_accuracy") is not None:
        title += f"\nfinal held-out: accuracy {held_out['pairwise_accuracy']:.3f} on {held_out['pairs']} pairs"
        if held_out.get("auc") is not None:
            title += f", pass/fail AUC {held_out['auc']:.3f}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax_loss.plot(steps, losses, color="tab:red", marker=_marker(steps), label="training loss")
    xs, ys = _series(log_history, "eval_loss")
    if xs:
        ax_loss.plot(xs, ys, color="tab:purple", marker="o", label="held-out loss")
    ax_loss.set_ylabel("loss: -log sigmoid(margin)\n(+ pointwise, if weighted)")
    ax_loss.legend(fontsize=8)
    _steps_axis([ax, ax_loss], resumed_from_step)
    fig.tight_layout()
    return fig


def _save(fig, path: str | Path) -> bool:
    if fig is None:
        return False
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return True


def plot_loss(log_history: list[dict], path: str | Path, title: str, resumed_from_step: int | None = None) -> bool:
    return _save(loss_figure(log_history, title, resumed_from_step), path)


def plot_rewards(log_history: list[dict], path: str | Path, reward_weights: dict[str, float],
                 resumed_from_step: int | None = None) -> bool:
    return _save(rewards_figure(log_history, reward_weights, resumed_from_step), path)


def plot_accuracy(log_history: list[dict], path: str | Path, held_out: dict | None = None,
                  resumed_from_step: int | None = None) -> bool:
    return _save(accuracy_figure(log_history, held_out, resumed_from_step), path)
