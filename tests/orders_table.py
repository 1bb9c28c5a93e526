"""Print, as a markdown table, the slopes that ``tests/test_orders.py`` asserts: ``python tests/orders_table.py``."""

import os
import sys

import scipy.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import solvers  # noqa: E402
import test_orders as orders  # noqa: E402
from problems import slope  # noqa: E402


class _Fixtures:
    """Stands in for pytest's ``request`` (module-scoped fixtures computed once)."""

    def __init__(self):
        self.cache = {}

    def getfixturevalue(self, name):
        if name not in self.cache:
            self.cache[name] = getattr(orders, name).__wrapped__()
        return self.cache[name]


def main():
    fixtures = _Fixtures()
    strong = fixtures.getfixturevalue("strong_problems")
    print("| scheme | noise | kind | declared | measured |")
    print("|---|---|---|---|---|")
    for row in orders.ROWS:
        scheme, noise, kind = row.values
        if kind == "ode":
            sde = orders.RotationDecay()
            x0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
            exact = torch.tensor(scipy.linalg.expm(sde.A * orders.T) @ x0[0].numpy())
            dts = [2.0**-k for k in range(2, 7)]
            errors = [float((solvers.sdeint(sde, x0, [0.0, orders.T], scheme, dt=dt)[-1, 0] - exact).norm())
                      for dt in dts]
            declared, measured = scheme.ode_order, slope(dts, errors)
        elif kind == "strong":
            declared, (measured, _) = scheme.order_for(noise), orders._strong_slope(*strong[noise][:1], scheme,
                                                                                      *strong[noise][1:])
        else:
            declared, (measured, _) = scheme.weak_order_for(noise), orders._weak_slope(scheme, noise, fixtures)
        print(f"| {scheme!r} | {noise or '—'} | {kind} | {declared:g} | {measured:.2f} |", flush=True)


if __name__ == "__main__":
    main()
