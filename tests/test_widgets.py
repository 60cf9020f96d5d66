"""optnb.widgets: explorers driven from pytest without a kernel (ipywidgets test_interaction style)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

widgets = pytest.importorskip("ipywidgets")

from optnb import widgets as W  # noqa: E402


def _sliders(explorer):
    return [c for c in explorer.controls.values() if isinstance(c, widgets.DOMWidget)]


def test_beta_explorer_redraws_on_release_only():
    ex = W.beta_explorer(beta=0.81, kappa=100.0, num_steps=40)
    assert isinstance(ex, widgets.VBox)
    assert len(ex.history) == 1 and ex.history[0]["beta"] == 0.81  # initial draw
    for c in _sliders(ex):
        assert c.continuous_update is False
    first = ex.last
    ex.controls["beta"].value = 0.3
    assert len(ex.history) == 2 and ex.history[-1]["beta"] == 0.3
    assert ex.last["beta"] == 0.3
    # less momentum than the tuned (1 - sqrt(mu))^2 = 0.81: HB gets slower, GD is unchanged
    assert ex.last["predicted_rate"]["HB"] > first["predicted_rate"]["HB"]
    assert ex.last["predicted_rate"]["GD"] == first["predicted_rate"]["GD"]
    ex.controls["kappa"].value = 10.0
    assert ex.last["mu"] == pytest.approx(0.1)
    assert plt.get_fignums() == []  # figures are closed after each redraw


def test_beta_view_is_pure_and_matches_theory():
    v = W.beta_view(beta=0.81, kappa=100.0, num_steps=300)
    assert v["best_hb_beta"] == pytest.approx(0.81)
    assert v["predicted_rate"]["HB"] == pytest.approx(0.9, abs=1e-6)
    assert v["predicted_rate"]["AGD"] == pytest.approx(0.9, abs=1e-6)
    assert v["final_error"]["HB"] < v["final_error"]["GD"]
    assert v["paths"]["GD"].shape == (301, 2)
    assert W.beta_view(0.81, 100.0, 300)["final_error"] == v["final_error"]
    with pytest.raises(ValueError, match="beta must be in"):
        W.beta_view(1.2, 10.0)
    fig = W.draw_beta_view(v)
    assert len(fig.axes) == 2
    plt.close(fig)


def test_activation_explorer_switches_activation():
    ex = W.activation_explorer(activation="tanh", lam1=0.3, lam2=0.9, angle=30.0)
    assert ex.last["activation"] == "tanh" and ex.last["decreasing"]
    assert ex.last["deviation"] <= 1e-10
    options = ex.controls["activation"].options
    assert "silu" in options and "relu" in options
    ex.controls["activation"].value = "sigmoid"
    assert ex.last["activation"] == "sigmoid" and len(ex.history) == 2
    assert ex.last["constants"].hess_lower == pytest.approx(1 - 0.25 * 0.9)
    ex.controls["lam2"].value = 5.0
    assert ex.last["constants"].lam_max == pytest.approx(5.0)
    assert plt.get_fignums() == []


def test_activation_view_shows_silu_increase():
    v = W.activation_view("silu", 12.0, 12.0, 0.0, num_layers=5, z0=(-0.2, -0.2))
    assert not v["decreasing"] and v["deviation"] <= 1e-10
    fig = W.draw_activation_view(v)
    assert len(fig.axes) >= 4
    plt.close(fig)


def test_callback_errors_surface_outside_a_kernel():
    ex = W.beta_explorer(draw=False)
    ex.view = lambda **kw: 1 / 0
    with pytest.raises(ZeroDivisionError):
        ex.controls["beta"].value = 0.2


def test_unknown_activation_in_explorer():
    with pytest.raises(KeyError, match="valid names"):
        W.activation_explorer(activation="gelu")


def test_reversible_explorer_redraws_the_gradient_error_for_the_new_beta():
    ex = W.reversible_explorer(beta=0.5, blocks=(4, 8), draw=False)
    assert [c.description for c in _sliders(ex)] == ["HB beta"]
    assert ex.last["beta"] == 0.5 and {r["depth"] for r in ex.last["rows"]} == {26, 50}
    ex.controls["beta"].value = 0.2
    assert len(ex.history) == 2 and ex.last["beta"] == 0.2
    by = {(r["dtype"], r["depth"]): r["rel_err"] for r in ex.last["rows"]}
    assert by[("float64", 26)] < 1e-10  # float64 reconstructs a short stage to round-off
    assert by[("float32", 50)] > by[("float64", 50)]  # float32 loses more at every depth
    plt.close(W.draw_reversible_view(ex.last))


def test_reversible_view_refuses_a_beta_it_cannot_divide_by():
    for beta in (0.0, 1.0, -0.3):
        with pytest.raises(ValueError, match=r"beta must be in \(0, 1\)"):
            W.reversible_view(beta)
