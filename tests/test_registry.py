"""The scheme registry, the typed terms and the HVAE checkpoint format: what a scheme declares is what the CLI,
the configs and the HVAE see."""

import warnings

import pytest
import torch

import solvers
from mrdiffusion.bench.config import DEFAULT_SOLVERS, SDE_SOLVERS, load_config
from mrdiffusion.bench.describe import catalogue

NAMED = ("EulerMaruyama", "TwoStepEuler", "Heun", "Milstein", "SRA1", "ExponentialEuler", "DriftImplicitEuler",
         "ExponentialHeun", "RK4", "StratonovichHeun", "StratonovichMidpoint", "DerivativeFreeMilstein")


def test_every_scheme_class_is_registered_and_builds_from_its_name():
    assert set(solvers.SCHEMES) == set(NAMED)
    for name, cls in solvers.SCHEMES.items():
        assert cls.__name__ == name and getattr(solvers, name) is cls
        assert isinstance(cls(), solvers.Scheme)
    # the tableau engines need a tableau, so they are not nameable; their named instances are
    assert "ExplicitRK" not in solvers.SCHEMES and "StochasticRungeKuttaAdditive" not in solvers.SCHEMES


def test_every_sde_scheme_is_listed_and_accepted_by_a_config(tmp_path):
    text = catalogue(levels=4)
    for name in solvers.SCHEMES:
        assert name in text
    assert set(SDE_SOLVERS) == {n for n in NAMED if n != "RK4"} and set(DEFAULT_SOLVERS) <= set(SDE_SOLVERS)
    cfg = tmp_path / "c.toml"
    cfg.write_text('solvers = ["StratonovichHeun", "StratonovichMidpoint", "DerivativeFreeMilstein"]\n')
    config = load_config(str(cfg), quick=True)
    assert [type(s).__name__ for s in config.schemes] == ["StratonovichHeun", "StratonovichMidpoint",
                                                          "DerivativeFreeMilstein"]


def test_register_is_where_a_scheme_is_defined_and_refuses_a_second_name():
    try:
        @solvers.register
        class HalfEuler(solvers.ItoScheme):
            noise_treatment = {"additive": "g dW"}

            def step(self, sde, t, h, x, dW, ctx):
                return ctx.add_noise(x.add(sde.drift(t, x), alpha=h), sde.diffusion(t, x), dW)

        assert solvers.SCHEMES["HalfEuler"] is HalfEuler
        with pytest.raises(ValueError, match="already registered"):
            solvers.register(type("HalfEuler", (solvers.ItoScheme,), {}))
        with pytest.raises(TypeError, match="Scheme subclass"):
            solvers.register(int)
    finally:
        solvers.SCHEMES.pop("HalfEuler", None)


def test_hvae_solvers_follow_from_scheme_facts():
    from mrdiffusion.hvae import SUPPORTED_SOLVERS

    # general noise, Itô, no Lévy area, and within DriftImplicitEuler's dense-Newton limit: it is left out
    assert set(SUPPORTED_SOLVERS) == {"EulerMaruyama", "TwoStepEuler", "Heun"}


class _Old(solvers.SDE):
    def drift(self, t, x):
        return -x

    def diffusion(self, t, x):
        return torch.ones_like(x)


def test_noise_is_a_deprecated_name_of_noise_type():
    with pytest.warns(DeprecationWarning, match="'noise' is deprecated"):
        class Additive(_Old):
            noise = "additive"
    assert Additive().noise_type == "additive" and solvers.as_terms(Additive()).noise_type == "additive"
    with pytest.warns(DeprecationWarning):
        inst = _Old()
        inst.noise = "scalar"
    assert inst.noise_type == "scalar"
    with pytest.warns(DeprecationWarning):
        solvers.sde_from_functions(lambda t, x: -x, lambda t, x: x, noise="diagonal")

    class Duck:  # not an SDE subclass: the old attribute is read once, at the boundary, with a warning
        noise = "additive"

        def drift(self, t, x):
            return -x

        def diffusion(self, t, x):
            return torch.ones_like(x)

    with pytest.warns(DeprecationWarning):
        assert solvers.as_terms(Duck()).noise_type == "additive"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        class New(_Old):
            noise_type = "additive"
        solvers.as_terms(New())


def test_terms_are_built_once_with_every_optional_part():
    class Split(solvers.SDE):
        noise_type = "diagonal"
        linear_only = True

        def drift(self, t, x):
            return -2.0 * x

        def diffusion(self, t, x):
            return 0.5 * x

        def drift_parts(self, t, x):
            return -x, -x

        def linear(self, t):
            return -2.0

    terms = solvers.as_terms(Split())
    x = torch.ones(3, 2, dtype=torch.float64)
    assert terms.noise_type == "diagonal" and terms.sde_type == "ito" and terms.linear_only
    assert terms.linear(0.0) == -2.0 and torch.equal(terms.drift_split[1](0.0, x), -x)
    assert terms.linear_transition is None and terms.diffusion_derivative is None and terms.brownian_size is None
    assert solvers.as_terms(terms) is terms
    with pytest.raises(dataclasses_frozen_error()):
        terms.noise_type = "additive"

    ode = solvers.as_terms(lambda t, y: -y)  # torchdiffeq-style func
    assert ode.noise_type is None and ode.diffusion is None
    assert torch.equal(ode.drift(0.0, x), -x)
    with pytest.raises(ValueError, match="brownian_size"):
        solvers.as_terms(type("Bad", (_Old,), {"brownian_size": 0})())
    with pytest.raises(ValueError, match="only one of drift_part1/drift_part2"):
        solvers.as_terms(type("Half", (_Old,), {"drift_part1": lambda self, t, x: x})())


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_design_doc_example_runs():
    """docs/design.md §4.2's example, run as written (its scheme is unregistered afterwards)."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text()
    code = re.search(r"<!-- example: add-a-scheme -->\n```python\n(.*?)```", text, re.S).group(1)
    try:
        exec(compile(code, "docs/design.md", "exec"), {"__name__": "design_example"})
    finally:
        solvers.SCHEMES.pop("ForwardEuler", None)


def test_every_registered_scheme_has_rows_in_the_order_table():
    import test_orders

    assert {type(s).__name__ for s in test_orders.all_schemes()} >= set(solvers.SCHEMES)


def test_hvae_checkpoint_of_another_format_version_is_one_clear_line(tmp_path):
    from mrdiffusion.hvae.checkpoint import FORMAT, load_checkpoint

    older = tmp_path / "older.pt"
    torch.save({"format": "mrdiffusion.hvae/0", "model": {}}, older)
    with pytest.raises(ValueError, match=r"has format 'mrdiffusion.hvae/0', but this version of mrdiffusion reads "
                                         r"'mrdiffusion.hvae/1'") as err:
        load_checkpoint(str(older))
    assert "\n" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="is not an mrdiffusion HVAE checkpoint"):
        load_checkpoint(str(foreign))
    current = tmp_path / "current.pt"
    torch.save({"format": FORMAT}, current)  # the current version passes the version check, then the schema's
    with pytest.raises(ValueError, match="has no 'model_config' entry") as err:
        load_checkpoint(str(current))
    assert "\n" not in str(err.value)
