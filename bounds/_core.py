"""The :class:`Bound` object shared by every result module of :mod:`bounds`.

A bound is one sympy expression ``expr`` in named, positive symbols, together with what it bounds
(``quantity``), in which direction (``kind``), where it comes from (``reference``), whether its constant is
explicit, and the conditions under which the paper proves it. Everything numeric is derived from ``expr``
(``numeric`` via :func:`sympy.lambdify`, ``latex`` via :func:`sympy.latex`, ``exponent`` via symbolic
differentiation), so a figure, a test and the documentation all read the same formula.

Conventions
-----------
* Symbols are created by :func:`symbol` so the same name always maps to the same sympy ``Symbol`` (with the
  same assumptions) in every module; Theorem 3.1′ at ``p = 1`` can therefore be compared with Theorem 3.1
  symbolically.
* Class sizes enter through their logarithm: ``log_class_size`` is log|Π|, ``log_cover_size`` is
  log N(Π, ε_disc). Sweeps are made against log|Π|, so its predicted slope is the power of log|Π|.
* A bound whose constant is "up to an absolute constant" (``≲``, ``O``, ``Õ``, ``≍``) has
  ``expr = c · g`` with ``c = constant`` a positive symbol; ``numeric`` takes it as the keyword
  ``constant`` (default 1, i.e. it evaluates the shape ``g``), and :meth:`Bound.fit_constant` calibrates it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.stats
import sympy

__all__ = [
    "Bound",
    "Condition",
    "ConstantFit",
    "symbol",
    "CONSTANT",
    "LATEX_NAMES",
    "SMALL_SYMBOLS",
]

# ---------------------------------------------------------------------------------------------------------
# Symbols: one registry so the same name is the same sympy object everywhere.
# ---------------------------------------------------------------------------------------------------------

_SYMBOLS: dict[str, sympy.Symbol] = {}

#: LaTeX for symbol names that sympy would not print nicely on its own.
LATEX_NAMES: dict[str, str] = {
    "epsilon": r"\varepsilon",
    "delta": r"\delta",
    "rho": r"\rho",
    "beta": r"\beta",
    "gamma_margin": r"\gamma_{\mathrm{margin}}",
    "C_cov": r"C_{\mathrm{cov}}",
    "C_cov_gamma": r"C_{\mathrm{cov},\gamma}",
    "C_cov_bar": r"\bar{C}_{\mathrm{cov}}",
    "C_conc": r"C_{\mathrm{conc}}",
    "C_loss": r"C_{\mathrm{loss}}",
    "log_class_size": r"\log|\Pi|",
    "log_cover_size": r"\log \mathcal{N}(\Pi,\varepsilon_{\mathrm{disc}})",
    "Y_size": r"|\mathcal{Y}|",
    "n": "n",
    "N": "N",
    "N_star": "N^{*}",
    "p": "p",
    "P_star": "P^{*}",
    "n_argmax": r"|y^{*}|",
    "mu_stop": r"\mu_{\mathrm{stop}}",
    "mass": r"\pi_{\mathrm{base}}(y^{*}_{\gamma}(x)\mid x)",
    "R_max": r"R_{\max}",
    "SEC": r"\mathrm{SEC}(\Pi)",
    "d": "d",
    "B": "B",
    "c": "c",
    "gamma": r"\gamma",
    "T": "T",
    "eps_disc": r"\varepsilon_{\mathrm{disc}}",
    "c_beta": r"c_{\beta}",
}

#: Symbols whose interesting regime is "small" (→ 0+); every other symbol's regime is "large" (→ ∞).
#: ``Bound.exponent`` takes its limit in this regime when the log-log slope is not constant.
SMALL_SYMBOLS = frozenset({"epsilon", "delta", "rho", "gamma", "gamma_margin", "beta", "mass", "P_star", "eps_disc"})

#: The name of the absolute constant of a non-explicit bound.
CONSTANT = "c"


def symbol(name: str, *, integer: bool = False) -> sympy.Symbol:
    """The positive sympy symbol called ``name`` (created once, then shared by every bound)."""
    if name not in _SYMBOLS:
        kwargs = {"positive": True}
        if integer:
            kwargs["integer"] = True
        _SYMBOLS[name] = sympy.Symbol(name, **kwargs)
    return _SYMBOLS[name]


# ---------------------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Condition:
    """A hypothesis of a result: a sympy relational (when it is one) and its meaning in words.

    ``relation`` may contain the bound's symbols and extra symbols (e.g. ``beta`` for Theorem 4.2, or a
    condition constant ``c_beta`` standing for "≲"); :meth:`holds` evaluates it when every free symbol is
    given, with extra numeric values allowed for the condition-only symbols.
    """

    meaning: str
    relation: sympy.Basic | None = None

    def holds(self, **values: Any) -> np.ndarray | None:
        """Evaluate the relation on (broadcast) values; ``None`` when it has no relation."""
        if self.relation is None:
            return None
        free = sorted(self.relation.free_symbols, key=lambda s: s.name)
        missing = [s.name for s in free if s.name not in values]
        if missing:
            raise ValueError(f"condition {self.meaning!r} needs values for {missing}.")
        fn = sympy.lambdify(free, self.relation, "numpy")
        return np.asarray(fn(*(np.asarray(values[s.name], dtype=float) for s in free)), dtype=bool)

    def __repr__(self) -> str:
        rel = "" if self.relation is None else f", relation={self.relation}"
        return f"Condition({self.meaning!r}{rel})"


# ---------------------------------------------------------------------------------------------------------
# Constant fit
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstantFit:
    """Result of :meth:`Bound.fit_constant`: ``measured ≈ constant · shape``.

    ``lower``/``upper`` is a ``level`` confidence interval for the constant; ``residual_sd`` is the standard
    deviation of ``log measured − log(constant · shape)`` (how far the data are from a constant ratio).
    """

    constant: float
    lower: float
    upper: float
    level: float
    method: str
    n_points: int
    residual_sd: float


# ---------------------------------------------------------------------------------------------------------
# Bound
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Bound:
    """One result of the paper as a sympy expression.

    Attributes
    ----------
    name:
        Registry key, e.g. ``"thm_4_1"``.
    reference:
        Where it is in the paper, e.g. ``"Theorem 4.1, Eq. (7)"``.
    kind:
        ``"lower"`` (the quantity is at least ``expr``) or ``"upper"`` (at most ``expr``).
    quantity:
        What is bounded, e.g. ``"m = n·N queries"``.
    expr:
        The sympy expression (containing ``constant`` when the constant is not explicit).
    symbols:
        Problem variables of ``expr``: name → positive sympy Symbol (the constant is not among them).
    explicit_constant:
        True when every constant in ``expr`` is a number printed in the paper.
    constant:
        The symbol of the absolute constant when ``explicit_constant`` is False, else None.
    conditions:
        Hypotheses under which the paper proves the result.
    notes:
        Reading choices and flagged typos (see ``docs/bounds.md``).
    """

    name: str
    reference: str
    kind: str
    quantity: str
    expr: sympy.Expr
    symbols: Mapping[str, sympy.Symbol]
    explicit_constant: bool
    constant: sympy.Symbol | None = None
    conditions: Sequence[Condition] = field(default_factory=tuple)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("lower", "upper"):
            raise ValueError(f"kind must be 'lower' or 'upper', got {self.kind!r}.")
        if self.explicit_constant != (self.constant is None):
            raise ValueError("give a constant symbol exactly when the constant is not explicit.")
        expected = set(self.symbols.values()) | ({self.constant} if self.constant is not None else set())
        if self.expr.free_symbols != expected:
            raise ValueError(
                f"{self.name}: expr has free symbols {sorted(map(str, self.expr.free_symbols))}, declared "
                f"{sorted(map(str, expected))}."
            )

    # -- presentation ----------------------------------------------------------------------------------

    @property
    def latex(self) -> str:
        """``sympy.latex`` of the expression, with the toolkit's symbol names (e.g. ``\\log|\\Pi|``)."""
        names = {s: LATEX_NAMES[s.name] for s in self.expr.free_symbols if s.name in LATEX_NAMES}
        return sympy.latex(self.expr, symbol_names=names)

    def latex_with(self, constant: Any = None) -> str:
        """LaTeX of the expression with the absolute constant replaced by a (fitted) number (3 digits)."""
        if self.constant is None or constant is None:
            return self.latex
        expr = self.expr.subs(self.constant, sympy.Float(float(constant), 3))
        names = {s: LATEX_NAMES[s.name] for s in expr.free_symbols if s.name in LATEX_NAMES}
        return sympy.latex(expr, symbol_names=names)

    @property
    def shape(self) -> sympy.Expr:
        """``expr`` with the absolute constant set to 1 (the expression itself when it is explicit)."""
        return self.expr if self.constant is None else self.expr.subs(self.constant, 1)

    @property
    def symbol_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.symbols))

    def __repr__(self) -> str:
        return f"Bound({self.name!r}, {self.reference!r}, {self.kind}: {self.quantity} ~ {self.expr})"

    # -- numerics --------------------------------------------------------------------------------------

    @functools.cached_property
    def _lambdified(self):
        args = [self.symbols[k] for k in self.symbol_names]
        if self.constant is not None:
            args.append(self.constant)
        return sympy.lambdify(args, self.expr, "numpy")

    def _check_names(self, values: Mapping[str, Any]) -> None:
        missing = [k for k in self.symbol_names if k not in values]
        extra = [k for k in values if k not in self.symbols]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing value(s) for {missing}")
            if extra:
                parts.append(f"unknown symbol(s) {extra}")
            raise ValueError(
                f"{self.name} ({self.reference}): {'; '.join(parts)}. Its symbols are {list(self.symbol_names)}"
                + ("" if self.constant is None else "; pass the absolute constant as constant=…")
                + "."
            )

    def numeric(self, constant: Any = None, **values: Any) -> np.ndarray:
        """Evaluate the bound on NumPy-broadcast values of every symbol.

        ``constant`` is the absolute constant ``c`` of a non-explicit bound (default 1, which evaluates the
        shape); it must be left out for an explicit bound. Raises ``ValueError`` naming any missing or
        unknown symbol.
        """
        self._check_names(values)
        arrays = [np.asarray(values[k], dtype=float) for k in self.symbol_names]
        if self.constant is None:
            if constant is not None:
                raise ValueError(f"{self.name} has an explicit constant; do not pass constant=.")
        else:
            arrays.append(np.asarray(1.0 if constant is None else constant, dtype=float))
        out = self._lambdified(*arrays)
        return np.broadcast_to(np.asarray(out, dtype=float), np.broadcast_shapes(*(a.shape for a in arrays))).copy()

    def fit_constant(
        self,
        measured: Any,
        *,
        level: float = 0.95,
        method: str = "t",
        n_boot: int = 2000,
        seed: int = 0,
        **values: Any,
    ) -> ConstantFit:
        """Calibrate the multiplicative constant on data: ``measured ≈ c · shape(values)``.

        ``c`` minimises Σ (log measured − log(c · g))², i.e. log c is the mean of the log-ratios
        ``r_i = log measured_i − log g_i``. The interval is the Student-t interval for that mean
        (``method="t"``, exact when the log-ratios are i.i.d. Gaussian) or a percentile bootstrap over the
        points (``method="bootstrap"``). For an explicit bound it measures the slack ``measured / bound``.
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {level!r}.")
        g = self.numeric(**values)
        m = np.asarray(measured, dtype=float)
        try:
            m, g = np.broadcast_arrays(m, g)
        except ValueError as exc:
            raise ValueError(f"measured has shape {np.shape(measured)}, not broadcastable to {g.shape}.") from exc
        m, g = m.ravel(), g.ravel()
        if np.any(~np.isfinite(m)) or np.any(m <= 0):
            raise ValueError("measured values must be finite and > 0 (the fit is in log space).")
        if np.any(~np.isfinite(g)) or np.any(g <= 0):
            raise ValueError(f"{self.name} evaluates to a non-positive or non-finite value at some point.")
        r = np.log(m) - np.log(g)
        k = r.size
        if k < 2:
            raise ValueError("fit_constant needs at least 2 points for an interval.")
        centre = float(r.mean())
        sd = float(r.std(ddof=1))
        if method == "t":
            res = scipy.stats.ttest_1samp(r, 0.0)
            ci = res.confidence_interval(confidence_level=level)
            lo, hi = float(ci.low), float(ci.high)
            if sd == 0.0:
                lo = hi = centre
        elif method == "bootstrap":
            rng = np.random.default_rng(seed)
            means = r[rng.integers(0, k, size=(n_boot, k))].mean(axis=1)
            lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        else:
            raise ValueError(f"method must be 't' or 'bootstrap', got {method!r}.")
        return ConstantFit(
            constant=math.exp(centre), lower=math.exp(lo), upper=math.exp(hi), level=level, method=method,
            n_points=k, residual_sd=sd,
        )

    # -- exponents -------------------------------------------------------------------------------------

    def exponent(self, symbol_name: str, *, include_logs: bool = False, at: Mapping[str, Any] | None = None):
        """Predicted log-log slope ``∂ log(bound) / ∂ log(symbol)``.

        ``include_logs=False`` (default): every ``log(·)`` sub-expression is frozen (replaced by a positive
        dummy), so log factors do not count; Theorem 3.1 gives −2 in ε. The elasticity is returned as an
        exact sympy number when it is constant; otherwise it is evaluated at ``at`` (a mapping of values)
        when given, else its limit in the symbol's regime (→ 0+ for ε, δ, ρ, γ_margin, β, masses; → ∞ for
        the others) is returned, e.g. 3 for log|Π| in Theorem 4.2's log³(C_loss|Π|/ρ).

        ``include_logs=True``: the local elasticity of the full expression, a float at ``at`` (required
        unless the elasticity is constant).
        """
        if symbol_name not in self.symbols:
            raise ValueError(f"{self.name} has no symbol {symbol_name!r}; its symbols are {list(self.symbol_names)}.")
        x = self.symbols[symbol_name]
        g = self.shape
        if not include_logs:
            logs = sorted(g.atoms(sympy.log), key=sympy.default_sort_key)
            g = g.xreplace({lg: sympy.Dummy(f"L{i}", positive=True) for i, lg in enumerate(logs)})
        elasticity = sympy.simplify(x * sympy.diff(sympy.log(g), x))
        has_dummy = any(isinstance(s, sympy.Dummy) for s in elasticity.free_symbols)
        if x not in elasticity.free_symbols and not has_dummy:
            return elasticity  # a number, or an expression in other parameters only (e.g. −1 − 1/p)
        if at is not None:
            point = {self.symbols[k]: v for k, v in at.items() if k in self.symbols}
            subs = {}
            for s in elasticity.free_symbols:
                if isinstance(s, sympy.Dummy):
                    continue
                if s not in point:
                    raise ValueError(f"exponent of {self.name} in {symbol_name} at a point needs a value for {s.name!r}.")
                subs[s] = point[s]
            if not include_logs:  # frozen logs take their value at the point
                by_name = {f"L{i}": lg for i, lg in enumerate(sorted(self.shape.atoms(sympy.log), key=sympy.default_sort_key))}
                for dmy in (s for s in elasticity.free_symbols if isinstance(s, sympy.Dummy)):
                    subs[dmy] = by_name[dmy.name].subs(point)
            return float(elasticity.subs(subs))
        if include_logs:
            raise ValueError(f"the elasticity of {self.name} in {symbol_name} with logs is not constant; pass at=.")
        direction = 0 if symbol_name in SMALL_SYMBOLS else sympy.oo
        lim = sympy.simplify(sympy.limit(elasticity, x, direction, "+" if direction == 0 else "-"))
        if x in lim.free_symbols or any(isinstance(s, sympy.Dummy) for s in lim.free_symbols) or lim.is_finite is False:
            raise ValueError(
                f"the log-log slope of {self.name} in {symbol_name} is not a power law in its regime "
                f"(elasticity {elasticity}); pass at= for the local slope."
            )
        return lim
