"""BandwiseEDMRho: EDM's ρ grid for all Haar bands at once (per-band schedules)."""

import math

import pytest

from mrdiffusion.processes import BandNoising, VESchedule
from mrdiffusion.sampling import BandwiseEDMRho, EDMRho

PERBAND = BandNoising((4, 4), 2, schedules=[VESchedule(0.002, 50.0), VESchedule(0.02, 50.0), VESchedule(0.2, 50.0)])


def _rho_coords(nz, t, rho):
    return [(math.sqrt(s.var(t)) / s.alpha(t)) ** (1 / rho) for s in nz.schedules]


def test_one_schedule_is_edm_rho():
    nz = BandNoising((4, 4), 2, schedules=VESchedule(0.002, 50.0))
    assert BandwiseEDMRho()(10, 1.0, 0.0, nz) == EDMRho()(10, 1.0, 0.0, nz)


def test_equal_steps_in_the_largest_band_change():
    rho = 7.0
    ts = BandwiseEDMRho(rho=rho, sigma_min=0.002)(12, 1.0, 0.0, PERBAND)
    assert len(ts) == 13 and ts[0] == 1.0 and ts[-1] == 0.0
    assert all(b < a for a, b in zip(ts, ts[1:]))
    # the span ends where the noisiest band reaches sigma_min, as EDMRho's
    assert ts[-2] == pytest.approx(EDMRho(rho=rho, sigma_min=0.002)(12, 1.0, 0.0, PERBAND)[-2], rel=1e-12)
    # each step's max_k |Δc_k| equals the common arc step where one band is fastest over the whole step; the
    # table interpolation and switches of the fastest band inside a step leave a spread of ~1%
    steps = [max(abs(x - y) for x, y in zip(_rho_coords(PERBAND, a, rho), _rho_coords(PERBAND, b, rho)))
             for a, b in zip(ts[:-1], ts[1:-1])]
    assert max(steps) / min(steps) < 1.03
    # a single-band ρ grid gives far more unequal per-band steps on the same problem
    ref = EDMRho(rho=rho, sigma_min=0.002)(12, 1.0, 0.0, PERBAND)
    ref_steps = [max(abs(x - y) for x, y in zip(_rho_coords(PERBAND, a, rho), _rho_coords(PERBAND, b, rho)))
                 for a, b in zip(ref[:-1], ref[1:-1])]
    assert max(ref_steps) / min(ref_steps) > 1.5


def test_needs_the_noising():
    with pytest.raises(ValueError, match="noising"):
        BandwiseEDMRho()(5, 1.0, 0.0)
    with pytest.raises(ValueError, match="steps"):
        BandwiseEDMRho()(0, 1.0, 0.0, PERBAND)
