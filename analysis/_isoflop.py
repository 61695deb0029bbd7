"""Iso-FLOP analysis of a GPT search under FLOP budgets (Hoffmann et al. 2022, "Chinchilla", approach 2).

For each value of the ``flop_budget`` parameter, the trials trained models of different sizes N with
the same compute C. Their best validation loss against ln N is fitted with a parabola,
L = a (ln N)^2 + b ln N + c; where a > 0 its vertex N*(C) = exp(-b / 2a) is the compute-optimal size at
that budget. A straight line through (ln C, ln N*) then gives the power law N*(C) = k C^alpha.
Chinchilla finds alpha ≈ 0.5; Kaplan et al. (2020) ≈ 0.73.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa

from tunelab.analysis._errors import AnalysisError
from tunelab.analysis._plot import Plot, label, new_figure
from tunelab.trainables import metrics

BUDGET_PARAM = "flop_budget"


@dataclasses.dataclass
class BudgetFit:
    """The parabola fit at one FLOP budget.

    Attributes:
        budget: C, the ``flop_budget`` value.
        params: N of each trial at this budget (ascending).
        losses: each trial's best loss, same order.
        coeffs: (a, b, c) of L = a (ln N)^2 + b ln N + c; None with fewer than 3 distinct sizes.
        n_opt: exp(-b / 2a), the compute-optimal size; None unless a > 0.
        loss_opt: the parabola's minimum; None unless a > 0.
        inside: whether n_opt lies within the sizes tried (False: extrapolated).
    """

    budget: float
    params: np.ndarray
    losses: np.ndarray
    coeffs: tuple[float, float, float] | None
    n_opt: float | None
    loss_opt: float | None
    inside: bool


@dataclasses.dataclass
class IsoFlopFit:
    """Per-budget parabolas and the power law N*(C) = coefficient · C^exponent.

    Attributes:
        budget_param, size, loss: the parameter and metrics the fit used.
        budgets: one ``BudgetFit`` per budget, ascending.
        exponent, coefficient: the power law through the budgets with an optimum; None with fewer than 2.
    """

    budget_param: str
    size: str
    loss: str
    budgets: list[BudgetFit]
    exponent: float | None
    coefficient: float | None

    def n_opt(self, budget: float) -> float:
        """N*(C) from the power law.

        Args:
            budget: C in FLOPs.
        """
        if self.exponent is None or self.coefficient is None:
            raise AnalysisError("the power law needs compute-optimal sizes at 2 budgets or more")
        return self.coefficient * budget**self.exponent

    def __str__(self) -> str:
        lines = [f"iso-FLOP fit of best {self.loss} against {self.size}, per {self.budget_param}:"]
        for b in self.budgets:
            opt = "no minimum (fewer than 3 sizes or not convex)" if b.n_opt is None else (
                f"N* = {b.n_opt:.4g}, {self.loss} = {b.loss_opt:.4g}" + ("" if b.inside else " (extrapolated)"))
            lines.append(f"  C = {b.budget:.3g}: {len(b.params)} trials, {opt}")
        if self.exponent is not None:
            lines.append(f"N*(C) = {self.coefficient:.4g} · C^{self.exponent:.3f}")
        return "\n".join(lines)


def isoflop_fit(
    runs: pa.Table,
    budget_param: str = BUDGET_PARAM,
    size: str = metrics.PARAMS,
    loss: str = metrics.VAL_LOSS,
) -> IsoFlopFit:
    """Fit loss-vs-size parabolas per FLOP budget and the compute-optimal power law.

    Args:
        runs: the ``runs`` table of ``load``.
        budget_param: the parameter holding each trial's FLOP budget.
        size: the metric giving a trial's model size (``params``, or ``params_nonembed`` as Kaplan et al.).
        loss: the loss whose best value (``best_<loss>``) is fitted.

    Raises:
        AnalysisError: the search has no such parameter or metrics.
    """
    if budget_param not in runs.column_names:
        raise AnalysisError(f"the search has no {budget_param!r} parameter; iso-FLOP analysis needs trials "
                            f"trained under several FLOP budgets")
    for col in (f"last_{size}", f"best_{loss}"):
        if col not in runs.column_names:
            raise AnalysisError(f"no trial logged {col.split('_', 1)[1]!r}; iso-FLOP analysis needs it")
    budget = np.asarray(runs.column(budget_param).to_pylist(), dtype=float)
    n = np.asarray(runs.column(f"last_{size}").to_pylist(), dtype=float)
    loss_v = np.asarray(runs.column(f"best_{loss}").to_pylist(), dtype=float)
    ok = np.isfinite(budget) & np.isfinite(n) & (n > 0) & np.isfinite(loss_v)
    if not ok.any():
        raise AnalysisError(f"no trial has a finite {budget_param}, {size} and {loss}")
    fits = []
    for c in sorted(set(budget[ok])):
        m = ok & (budget == c)
        order = np.argsort(n[m])
        ns, ls = n[m][order], loss_v[m][order]
        coeffs = n_opt = loss_opt = None
        inside = False
        if len(set(ns)) >= 3:
            a, b, c0 = np.polyfit(np.log(ns), ls, 2)
            coeffs = (float(a), float(b), float(c0))
            if a > 0:
                x_opt = -b / (2 * a)
                n_opt = float(math.exp(x_opt))
                loss_opt = float(c0 - b * b / (4 * a))
                inside = bool(ns.min() <= n_opt <= ns.max())
        fits.append(BudgetFit(float(c), ns, ls, coeffs, n_opt, loss_opt, inside))
    with_opt = [f for f in fits if f.n_opt is not None]
    exponent = coefficient = None
    if len(with_opt) >= 2:
        slope, intercept = np.polyfit(np.log([f.budget for f in with_opt]), np.log([f.n_opt for f in with_opt]), 1)
        exponent, coefficient = float(slope), float(math.exp(intercept))
    return IsoFlopFit(budget_param, size, loss, fits, exponent, coefficient)


def plot_isoflop(runs: pa.Table, budget_param: str = BUDGET_PARAM, size: str = metrics.PARAMS,
                 loss: str = metrics.VAL_LOSS) -> Plot:
    """Left: best loss against model size at each budget, with the fitted parabolas and their minima.
    Right: the compute-optimal size N* against the budget C on log-log axes, with the power-law fit.

    Args:
        runs: the ``runs`` table of ``load``.
        budget_param, size, loss: as for ``isoflop_fit``.
    """
    fit = isoflop_fit(runs, budget_param, size, loss)
    fig, (left, right) = new_figure(ncols=2)
    for i, b in enumerate(fit.budgets):
        color = f"C{i % 10}"
        left.scatter(b.params, b.losses, color=color, s=20, label=f"C = {b.budget:.2g}")
        if b.coeffs is not None:
            grid = np.linspace(math.log(b.params.min()) - 0.3, math.log(b.params.max()) + 0.3, 100)
            left.plot(np.exp(grid), np.polyval(b.coeffs, grid), color=color, lw=1)
        if b.n_opt is not None:
            left.scatter([b.n_opt], [b.loss_opt], marker="*", s=120, color=color, edgecolor="black", zorder=3)
    left.set_xscale("log")
    left.set_xlabel(label(size))
    left.set_ylabel(f"best {loss}")
    left.set_title("iso-FLOP profiles")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, title=budget_param, title_fontsize=7)

    opt = [b for b in fit.budgets if b.n_opt is not None]
    if opt:
        right.scatter([b.budget for b in opt], [b.n_opt for b in opt], color="black", zorder=3, label="N* per budget")
    if fit.exponent is not None:
        cs = np.geomspace(min(b.budget for b in opt) / 2, max(b.budget for b in opt) * 2, 50)
        right.plot(cs, fit.coefficient * cs**fit.exponent, color="C3",
                   label=f"N* = {fit.coefficient:.3g} · C^{fit.exponent:.2f}")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("FLOP budget C")
    right.set_ylabel(f"compute-optimal {label(size)} N*")
    right.set_title("compute-optimal size")
    right.grid(alpha=0.3, which="both")
    if opt:
        right.legend(fontsize=7)
    law = (f"The power law through them is N*(C) = {fit.coefficient:.3g} · C^{fit.exponent:.3f}."
           if fit.exponent is not None else "Fewer than two budgets have a minimum, so no power law is fitted.")
    caption = (f"Left: best {loss} of each trial against its {label(size)} at each {budget_param}, with a parabola "
               f"fitted in log({size}) per budget; stars mark the minima N*(C). Right: N* against the budget. {law}")
    return Plot(fig, caption, "isoflop", data=fit)
